"""Does averaging the reward over flow samples (``reward_samples``) cut its noise, at what cost?

For each embedded bundle, from 16 reset-bank starts (evenly spaced over the bank) and the
bundle's BC policy's chunk at each start, one dreamed step is repeated with 8 flow-noise seeds
for each ``R``. Per ``R`` and reward mode:

* ``noise_std``: std of the one-step reward over the 8 seeds (``ddof=1``), averaged over starts:
  the noise ``R`` is meant to shrink (independent samples: ``1 / sqrt(R)``);
* ``signal_std``: std over starts of the seed-mean reward: how much the reward tells starts apart;
* ``noise_to_signal``: their ratio (lower: a step's reward ranks states more reliably);
* ``ms_per_step_single``: median wall-clock of one step of a single env (``B = 1``);
* ``ms_per_env_step_batched``: wall-clock of one batched step of all ``16 x 8`` envs, per env.

Every start has its own 8 seeds, the same for every ``R``; sample 0 (the state) does not depend
on ``R``, so the rows differ only by the extra samples. One torch thread, the env's default flow
steps.

    python benchmarks/reward_samples.py
    python benchmarks/reward_samples.py --suites dmc-reacher --samples 1 4
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from rla_gym.agents import ActorCritic
from rla_gym.envs.rla_world import RLAWorldEnv
from rla_gym.envs.vector import RLAWorldVectorEnv
from rla_gym.utils import provenance, save_json


@dataclass(frozen=True)
class Args:
    suites: tuple[str, ...] = ("libero", "robosuite-lift", "dmc-reacher")
    """Embedded bundles to measure."""
    samples: tuple[int, ...] = (1, 2, 4, 8)
    """Values of ``reward_samples`` (R)."""
    reward_modes: tuple[str, ...] = ("aligned", "progress")
    """Reward modes to score the same dreamed samples with."""
    num_starts: int = 16
    """Reset-bank starts, evenly spaced over the bank."""
    num_seeds: int = 8
    """Flow-noise seeds per start."""
    flow_steps: int = 10
    """Euler steps per prediction (the env's default)."""
    single_steps: int = 20
    """Timed steps of the single env per ``R`` (after one warm-up step)."""
    seed: int = 0
    """First noise seed; start ``i`` uses seeds ``seed + i * num_seeds + k``, ``k < num_seeds``
    (fresh noise per start: with the same 8 seeds at every start, the noise estimate rests on 8
    draws however many starts there are, and the reward's heavy-tailed noise makes that erratic)."""
    device: str = "cpu"
    out: Path = Path("benchmarks/results/reward_samples.json")


def bc_chunks(env: RLAWorldVectorEnv, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start features ``(S, N, D)`` of bank entries ``starts`` and the BC policy's chunks there."""
    core = env.core
    feats = core.reset_features[torch.as_tensor(starts)].cpu().numpy()
    policy = ActorCritic.load(core.bundle_path / "policy", device=core.device).eval()
    chunks = np.clip(policy.predict(feats, deterministic=True)[0], -1.0, 1.0)
    return feats, chunks.reshape(len(starts), -1).astype(np.float32)


def one_step_rewards(
    suite: str, mode: str, r: int, starts: np.ndarray, args: Args
) -> tuple[np.ndarray, float]:
    """Rewards ``(starts, seeds)`` of one BC step, and the batched step's wall-clock (s)."""
    n = len(starts) * args.num_seeds
    env = RLAWorldVectorEnv(
        n,
        suite=suite,
        device=args.device,
        flow_steps=args.flow_steps,
        reward_mode=mode,
        reward_samples=r,
    )
    feats, chunks = bc_chunks(env, starts)
    options = {
        "start": "features",
        "features": np.repeat(feats, args.num_seeds, 0),  # env j: start j // seeds
        "demo": np.repeat(env.core.art.reset_demo[starts], args.num_seeds),
    }
    seeds = list(range(args.seed, args.seed + n))  # env j: seed j, start j // num_seeds
    actions = np.repeat(chunks, args.num_seeds, 0)
    seconds = []
    for _ in range(2):  # the faster of two identical calls: the machine is shared
        env.reset(seed=seeds, options=options)
        t0 = time.perf_counter()
        reward = env.step(actions)[1]
        seconds.append(time.perf_counter() - t0)
    return reward.reshape(len(starts), args.num_seeds), min(seconds)


def single_step_ms(suite: str, r: int, args: Args) -> float:
    """Median wall-clock (ms) of a single env's step with ``reward_samples = r``."""
    env = RLAWorldEnv(suite=suite, device=args.device, flow_steps=args.flow_steps, reward_samples=r)
    env.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    shape = env.action_space.shape
    env.step(rng.uniform(-1, 1, shape).astype(np.float32))  # warm-up
    times = []
    for _ in range(args.single_steps):
        action = rng.uniform(-1, 1, shape).astype(np.float32)
        t0 = time.perf_counter()
        truncated = env.step(action)[3]
        times.append(time.perf_counter() - t0)
        if truncated:
            env.reset()
    return 1000 * float(np.median(times))


def measure_suite(suite: str, args: Args) -> dict:
    probe = RLAWorldEnv(suite=suite, device=args.device, flow_steps=1)
    bank = len(probe.core.reset_features)
    starts = np.unique(np.linspace(0, bank - 1, args.num_starts).round().astype(int))
    man = probe.manifest
    out: dict = {
        "task": man["task"],
        "encoder": man["encoder_fingerprint"],
        "chunk": int(man["chunk"]),
        "starts": starts.tolist(),
        "modes": {},
    }
    single = {r: single_step_ms(suite, r, args) for r in args.samples}
    for mode in args.reward_modes:
        rows = []
        for r in args.samples:
            rewards, seconds = one_step_rewards(suite, mode, r, starts, args)
            noise = float(rewards.std(1, ddof=1).mean())
            signal = float(rewards.mean(1).std(ddof=1))
            rows.append(
                {
                    "reward_samples": r,
                    "noise_std": noise,
                    "signal_std": signal,
                    "noise_to_signal": noise / signal if signal > 0 else None,
                    "mean_reward": float(rewards.mean()),
                    "ms_per_step_single": round(single[r], 2),
                    "ms_per_env_step_batched": round(1000 * seconds / rewards.size, 3),
                }
            )
            print(suite, mode, rows[-1], flush=True)
        base = rows[0]["noise_std"]
        for row in rows:
            row["noise_vs_r1"] = row["noise_std"] / base if base > 0 else None
        out["modes"][mode] = rows
    return out


def main(args: Args) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    suites = {s: measure_suite(s, args) for s in args.suites}
    result = {
        "provenance": provenance(
            seed=args.seed,
            seeds="env j (start j // num_seeds) has seed seed + j, for every R",
            encoder=sorted({v["encoder"] for v in suites.values()}),
            device=args.device,
            flow_steps=args.flow_steps,
            num_starts=args.num_starts,
            num_seeds=args.num_seeds,
            actions="the bundle BC policy's deterministic chunk at each start",
            seconds=round(time.perf_counter() - t0, 1),
        ),
        **suites,
    }
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
