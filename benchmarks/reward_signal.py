"""Is there a direction for PPO to climb? How the base policy's dreamed return answers a small,
fixed change of its actions, and whether the answer survives new flow noise.

Residual PPO (the main job) moves the bundle's base by at most ``--scale`` per normalised action.
It can only climb a reward whose answer to such a move is the same under the flow noise it was
measured with and under fresh noise: otherwise each update follows that rollout's noise, and the
policy random-walks. For each embedded bundle, from ``--starts`` reset-bank starts (evenly spaced
over the bank), the base runs closed loop in the dream for the bundle's horizon, alone and with
each of ``--directions`` random sign vectors times ``--scale`` added to every chunk it outputs,
each under two flow-noise seeds per start (the same two for the base and every direction). One
set of dreamed trajectories is scored in every reward mode (the dynamics do not depend on the
reward). Per reward mode:

* ``noise_std``: std of the base's return between the two seeds, averaged over starts;
* ``effect_mean_abs``: mean |return(base + direction) - return(base)| under one seed;
* ``consistency``: correlation of that change under seed 1 with the change under seed 2, over
  (start, direction) pairs: 1 = the reward answers the action alone, 0 = it answers the noise;
* ``best_gain_in_sample``: per start, the direction with the largest change under one seed, its
  change there (averaged over starts and both ways round);
* ``best_gain_held_out``: the same direction's change under the other seed: what an optimiser
  that follows one rollout's answer would really gain;
* the same two for the success estimate (``success_gain_*``, share of starts).

Writes ``benchmarks/results/reward_signal.json``. One torch thread, the main job's flow steps.

    python benchmarks/reward_signal.py                     # ~6 min on 2 cores
    python benchmarks/reward_signal.py --suites dmc-reacher --starts 4 --directions 2 \\
        --out /tmp/reward_signal.json                      # smoke run
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from rla_gym.agents import ActorCritic
from rla_gym.envs.core import DreamCore
from rla_gym.envs.rla_world import RLAWorldConfig, resolve_artifacts
from rla_gym.envs.vector import RLAWorldVectorEnv
from rla_gym.evaluation.dream_vs_real import dream_rollouts, score_modes
from rla_gym.utils import provenance, save_json
from rla_gym.utils.io import to_jsonable


@dataclass(frozen=True)
class Args:
    suites: tuple[str, ...] = ("libero", "robosuite-lift", "dmc-reacher")
    """Embedded bundles to measure."""
    reward_modes: tuple[str, ...] = ("aligned", "goal", "progress")
    """Reward modes to score the same dreamed trajectories with."""
    starts: int = 16
    """Reset-bank starts, evenly spaced over the bank."""
    directions: int = 8
    """Random sign vectors per start (the same for every start)."""
    scale: float = 0.1
    """Size of the change per normalised action (the main job's residual bound, paper: 0.1)."""
    flow_steps: int = 5
    """Euler steps per dreamed chunk (the main job's)."""
    block: int = 4
    """Starts dreamed per batched call (``block x (directions + 1) x 2`` envs)."""
    seed: int = 0
    """Seed of the directions and the flow noise."""
    device: str = "cpu"
    out: Path = Path("benchmarks/results/reward_signal.json")

    def __post_init__(self) -> None:
        if self.starts < 2 or self.directions < 2 or self.block < 1:
            raise ValueError("--starts and --directions must be >= 2 and --block >= 1")
        if not 0 < self.scale <= 1:
            raise ValueError(f"--scale must be in (0, 1], got {self.scale}")


class ShiftedPolicy:
    """The base's deterministic chunk plus a fixed change per env, clipped to the action box.

    ``shifts``: ``float32 (B, K * A)``, one row per env of the batch the policy acts in.
    """

    def __init__(self, base: ActorCritic, shifts: np.ndarray) -> None:
        self.base, self.shifts = base, shifts

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        action = self.base.predict(obs, deterministic=True)[0]
        return np.clip(action + self.shifts, -1.0, 1.0).astype(np.float32), None


def returns_by_mode(bundle: Path, args: Args) -> tuple[dict[str, Any], dict[str, Any]]:
    """Dream every (start, direction or base, seed) episode of ``bundle``'s base policy
    (``bundle/policy``) and score it in every mode.

    Returns:
        ``{mode: {"returns": (S, D + 1, 2), "success": (S, D + 1, 2)}}`` (index 0 of the second
        axis is the base alone) and facts about the run.
    """
    cfg = RLAWorldConfig(artifacts=str(bundle), device=args.device, flow_steps=args.flow_steps)
    cores = {m: DreamCore(dataclasses.replace(cfg, reward_mode=m)) for m in args.reward_modes}
    core = next(iter(cores.values()))
    bank = len(core.reset_features)
    starts = np.unique(np.linspace(0, bank - 1, args.starts).round().astype(int))
    size = core.chunk * core.action_dim
    rng = np.random.default_rng(args.seed)
    signs = rng.choice([-1.0, 1.0], size=(args.directions, size)).astype(np.float32)
    shifts_one = np.concatenate([np.zeros((1, size), np.float32), args.scale * signs])
    base = ActorCritic.load(bundle / "policy", device=core.device).eval()
    n_var = len(shifts_one)
    shape = (len(starts), n_var, 2)
    out = {m: {"returns": np.zeros(shape), "success": np.zeros(shape)} for m in args.reward_modes}
    for lo in range(0, len(starts), args.block):
        block = starts[lo : lo + args.block]
        # env order: start, then variant, then seed; both seeds of a start are shared by all
        # of its variants (the pairing), and differ between starts.
        env_start = np.repeat(block, n_var * 2)
        env_var = np.tile(np.repeat(np.arange(n_var), 2), len(block))
        env_seed = np.tile([0, 1], len(block) * n_var)
        seeds = (args.seed + 1000 * env_start + env_seed).tolist()
        venv = RLAWorldVectorEnv(len(env_start), config=cfg)
        policy = ShiftedPolicy(base, shifts_one[env_var])
        roll = dream_rollouts(venv, env_start.tolist(), policy=policy, seed=seeds,
                              keep_features=True)  # fmt: skip
        venv.close()
        scored = score_modes(cores, roll["features"], roll["demo"], roll.get("body"))
        for mode, s in scored.items():
            ret = s["rewards"].sum(1).reshape(len(block), n_var, 2)
            suc = s["success"].any(1).reshape(len(block), n_var, 2)
            out[mode]["returns"][lo : lo + len(block)] = ret
            out[mode]["success"][lo : lo + len(block)] = suc
    facts = {"bundle": str(bundle), "task": core.manifest["task"], "bank": bank,
             "starts": starts.tolist(), "chunks": int(core.max_episode_steps),
             "chunk": core.chunk, "action_dim": core.action_dim,
             "encoder": core.manifest["encoder_fingerprint"]}  # fmt: skip
    return out, facts


def signal_stats(returns: np.ndarray, success: np.ndarray) -> dict[str, float]:
    """The numbers of the module docstring from ``(S, D + 1, 2)`` returns and successes."""
    delta = returns[:, 1:] - returns[:, :1]  # (S, D, 2)
    d_succ = success[:, 1:].astype(float) - success[:, :1].astype(float)
    a, b = delta[..., 0].ravel(), delta[..., 1].ravel()
    consistency = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    in_s, held, s_in, s_held = [], [], [], []
    for k in (0, 1):  # pick on one seed, judge on the other, both ways round
        best = delta[..., k].argmax(1)  # (S,)
        rows = np.arange(len(best))
        in_s.append(delta[rows, best, k].mean())
        held.append(delta[rows, best, 1 - k].mean())
        best_s = (delta[..., k] + 1e-9 * d_succ[..., k]).argmax(1)
        s_in.append(d_succ[rows, best_s, k].mean())
        s_held.append(d_succ[rows, best_s, 1 - k].mean())
    return {
        "noise_std": float(np.abs(returns[:, 0, 0] - returns[:, 0, 1]).mean() / np.sqrt(2)),
        "effect_mean_abs": float(np.abs(delta).mean()),
        "consistency": consistency,
        "best_gain_in_sample": float(np.mean(in_s)),
        "best_gain_held_out": float(np.mean(held)),
        "success_gain_in_sample": float(np.mean(s_in)),
        "success_gain_held_out": float(np.mean(s_held)),
        "base_return": float(returns[:, 0].mean()),
        "base_success": float(success[:, 0].mean()),
    }


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    result: dict[str, Any] = {
        "provenance": provenance(seed=args.seed, encoder="per suite", device=args.device),
        "config": to_jsonable(args),
        "suites": {},
    }
    for suite in args.suites:
        t0 = time.perf_counter()
        scored, facts = returns_by_mode(resolve_artifacts(None, suite), args)
        modes = {m: signal_stats(s["returns"], s["success"]) for m, s in scored.items()}
        result["suites"][suite] = {**facts, "modes": modes,
                                   "wall_s": time.perf_counter() - t0}  # fmt: skip
        for m, st in modes.items():
            print(f"{suite:15s} {m:9s} consistency {st['consistency']:+.2f}  "
                  f"gain in-sample {st['best_gain_in_sample']:+.3f} held-out "
                  f"{st['best_gain_held_out']:+.3f}  noise {st['noise_std']:.3f}  "
                  f"effect {st['effect_mean_abs']:.3f}", flush=True)  # fmt: skip
        save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
