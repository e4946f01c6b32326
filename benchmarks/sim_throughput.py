"""Real-simulator throughput: control steps per second with and without rendering, and with
rendering + encoding (the full "real" observation pipeline a policy sees).

These are the "real" side of the dream-vs-real speed ratios reported later.

    python benchmarks/sim_throughput.py                        # all sims, ~20 s per measurement
    python benchmarks/sim_throughput.py --sims dmc --seconds 5
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from rla_gym.features import DEFAULT_ENCODER, make_encoder
from rla_gym.sims.factory import make_sim
from rla_gym.utils import provenance, save_json


@dataclass(frozen=True)
class Args:
    sims: tuple[str, ...] = ("libero", "robosuite", "dmc")
    """simulators to measure (default tasks: libero_object/0, Lift, reacher-easy)"""
    resolution: int = 128
    """camera resolution"""
    seconds: float = 20.0
    """measurement time per configuration (after one reset)"""
    encoder: str = DEFAULT_ENCODER
    """encoder used for the render + encode row"""
    seed: int = 0
    out: Path = Path("benchmarks/results/sim_throughput.json")
    modes: tuple[str, ...] = field(default=("physics", "render", "render+encode"))
    """physics only / physics + camera frame / frame encoded to features as well"""


def measure(sim_name: str, mode: str, args: Args, encoder) -> dict:
    sim = make_sim(sim_name, resolution=args.resolution, render=mode != "physics")
    rng = np.random.default_rng(args.seed)
    try:
        sim.reset(seed=args.seed, init_state_id=0 if sim.num_init_states else None)
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            obs = sim.step(rng.uniform(sim.action_low, sim.action_high).astype(np.float32))
            if mode == "render+encode":
                encoder.encode(obs.frame[None])
            steps += 1
            if steps % 100 == 0:  # stay inside the task's horizon without timing the reset
                sim.reset(seed=args.seed + steps, init_state_id=0 if sim.num_init_states else None)
        dt = time.perf_counter() - t0
    finally:
        sim.close()
    return {
        "sim": sim_name,
        "task": sim.task,
        "mode": mode,
        "resolution": args.resolution,
        "steps": steps,
        "seconds": round(dt, 2),
        "steps_per_s": round(steps / dt, 2),
    }


def main(args: Args) -> dict:
    encoder = make_encoder(args.encoder)
    rows = []
    for sim_name in args.sims:
        for mode in args.modes:
            row = measure(sim_name, mode, args, encoder)
            print(row, flush=True)
            rows.append(row)
    result = {
        "provenance": provenance(seed=args.seed, device="cpu", encoder=encoder.fingerprint),
        "note": "steps/s include a reset every 100 steps; one process",
        "rows": rows,
    }
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
