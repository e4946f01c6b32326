"""Dream vs real: env steps/s of the dreamed env (single and batched) and of the real simulator.

One dreamed env step is one chunk of ``K`` control steps, so every row reports both rates:
``env_steps_per_s`` (decisions of an RL agent) and ``control_steps_per_s`` (= K x env steps for
the dream; the simulator's native rate for the real side). The real side is what a policy sees
there: physics + camera frame + encoding it with the bundle's encoder, random actions.
Measured side by side in one process, one torch thread (the machine is shared).

    python benchmarks/dream_speed.py --artifacts rla_gym/envs/assets/libero
    python benchmarks/dream_speed.py --artifacts /tmp/bundle --num-envs 1 16 --seconds 3
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from rla_gym.envs.artifacts import load_artifacts
from rla_gym.envs.rla_world import RLAWorldEnv, resolve_artifacts
from rla_gym.envs.vector import RLAWorldVectorEnv
from rla_gym.utils import provenance, save_json


@dataclass(frozen=True)
class Args:
    artifacts: str | None = None
    """Bundle folder (default: the embedded LIBERO bundle)."""
    num_envs: tuple[int, ...] = (1, 16, 64, 256)
    """Batch sizes of the native vector env."""
    seconds: float = 10.0
    """Measurement time per configuration (after a warm-up step)."""
    flow_steps: int = 10
    """Euler steps per prediction."""
    device: str = "cpu"
    """Torch device of the world model."""
    threads: int = 1
    """Torch intra-op threads."""
    real: bool = True
    """Also measure the real simulator (needs the sim's extra installed)."""
    seed: int = 0
    note: str = ""
    """Free-form remark stored in the result (e.g. which checkpoint the bundle holds)."""
    out: Path = Path("benchmarks/results/dream_speed.json")


def _time_loop(step: callable, seconds: float) -> tuple[int, float]:  # type: ignore[valid-type]
    step()  # warm-up: first-call allocations and lazy imports are not throughput
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        step()
        n += 1
    return n, time.perf_counter() - t0


def measure_single(path: str, args: Args, chunk: int) -> dict:
    env = RLAWorldEnv(path, device=args.device, flow_steps=args.flow_steps)
    env.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    shape = env.action_space.shape

    def step() -> None:
        _, _, _, truncated, info = env.step(rng.uniform(-1, 1, shape).astype(np.float32))
        if info["t"] >= 20 * chunk or truncated:  # reset is not timed separately
            env.reset()

    n, dt = _time_loop(step, args.seconds)
    return _row("dream-single", 1, n, dt, chunk)


def measure_vector(path: str, args: Args, num_envs: int, chunk: int) -> dict:
    venv = RLAWorldVectorEnv(
        num_envs, path, device=args.device, flow_steps=args.flow_steps, max_episode_steps=20
    )
    venv.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    shape = venv.action_space.shape
    n, dt = _time_loop(
        lambda: venv.step(rng.uniform(-1, 1, shape).astype(np.float32)), args.seconds
    )
    return _row("dream-vector", num_envs, n, dt, chunk)


def measure_real(
    sim_name: str, task: str, resolution: int, encoder_name: str, args: Args, chunk: int
) -> dict:
    from rla_gym.features import make_encoder
    from rla_gym.sims.factory import make_sim

    encoder = make_encoder(encoder_name)
    sim = make_sim(sim_name, task, resolution=resolution, render=True)
    rng = np.random.default_rng(args.seed)
    init = 0 if sim.num_init_states else None
    try:
        sim.reset(seed=args.seed, init_state_id=init)
        count = [0]

        def step() -> None:
            obs = sim.step(rng.uniform(sim.action_low, sim.action_high).astype(np.float32))
            encoder.encode(obs.frame[None])
            count[0] += 1
            if count[0] % 160 == 0:
                sim.reset(seed=args.seed + count[0], init_state_id=init)

        n, dt = _time_loop(step, args.seconds)
    finally:
        sim.close()
    row = _row("real-render+encode", 1, n, dt, 1)
    # The real simulator's native unit is a control step; an RL "env step" of the dream is K.
    row["env_steps_per_s"] = round(row["control_steps_per_s"] / chunk, 3)
    row.update(sim=sim_name, task=task, encoder=encoder.fingerprint)
    return row


def _row(kind: str, num_envs: int, n: int, dt: float, chunk: int) -> dict:
    per_s = n * num_envs / dt
    return {
        "kind": kind,
        "num_envs": num_envs,
        "calls": n,
        "seconds": round(dt, 2),
        "env_steps_per_s": round(per_s, 3),
        "control_steps_per_s": round(per_s * chunk, 3),
    }


def main(args: Args) -> dict:
    torch.set_num_threads(args.threads)
    path = str(resolve_artifacts(args.artifacts, "libero"))
    man = load_artifacts(path).manifest
    chunk = int(man["chunk"])
    rows = [measure_single(path, args, chunk)]
    print(rows[-1], flush=True)
    for n in args.num_envs:
        rows.append(measure_vector(path, args, n, chunk))
        print(rows[-1], flush=True)
    if args.real:
        try:
            rows.append(
                measure_real(
                    man["sim"],
                    man["task"],
                    int(man.get("resolution") or 128),
                    man["encoder"],
                    args,
                    chunk,
                )
            )
            print(rows[-1], flush=True)
        except Exception as err:  # a missing sim must not lose the dream numbers
            rows.append({"kind": "real-render+encode", "error": f"{type(err).__name__}: {err}"})
    real = next((r for r in rows if r["kind"].startswith("real") and "error" not in r), None)
    if real is not None:
        for r in rows:
            r["speedup_vs_real_control_steps"] = round(
                r["control_steps_per_s"] / real["control_steps_per_s"], 3
            )
    result = provenance(
        artifacts=path,
        sim=man["sim"],
        task=man["task"],
        chunk=chunk,
        flow_steps=args.flow_steps,
        device=args.device,
        threads=args.threads,
        user_note=args.note,
        bundle_bytes=man.get("total_bytes"),
        note="dream env step = K control steps; real rows are single-process render + encode "
        "with random actions, resets every 160 control steps included",
        rows=rows,
    )
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
