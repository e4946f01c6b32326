"""Scripted-expert success rates with Wilson 95 % intervals, in the real simulators.

LIBERO runs over the task's 50 fixed init states; robosuite and dm-control over 50 seeds. Rendering
is off (experts read privileged state), episodes run in parallel worker processes.

    python benchmarks/expert_success.py
    python benchmarks/expert_success.py --sims libero --episodes 10
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from rla_gym.utils import provenance, save_json


@dataclass(frozen=True)
class Args:
    sims: tuple[str, ...] = ("libero", "robosuite", "dmc")
    """simulators (default tasks: libero_object/0, Lift, reacher-easy)"""
    episodes: int = 50
    """episodes per simulator (LIBERO: init states 0..episodes-1)"""
    policy: str = "expert"
    """policy kind (expert, noisy, random, play)"""
    workers: int = 2
    """worker processes"""
    seed: int = 1000
    """base seed for seeded resets (robosuite, dm-control) and policy noise"""
    out: Path = Path("benchmarks/results/expert_success.json")


def main(args: Args) -> dict:
    from rla_gym.evaluation.real import RealEvalConfig
    from rla_gym.evaluation.scripted import evaluate_scripted_in_sim

    rows = []
    for sim_name in args.sims:
        cfg = RealEvalConfig(
            sim=sim_name, episodes=args.episodes, workers=args.workers, seed=args.seed
        )
        r = evaluate_scripted_in_sim(args.policy, cfg)  # run_scripted_episode per episode
        lengths = [e["length"] for e in r["rows"] if e["success"]]
        row = {
            "sim": sim_name,
            "policy": args.policy,
            "episodes": r["episodes"],
            "successes": r["successes"],
            "success_rate": r["success_rate"],
            "wilson95": [round(x, 4) for x in r["wilson95"]],
            "mean_success_length": sum(lengths) / max(len(lengths), 1),
            "wall_clock_s": round(r["wall_clock_s"], 1),
            "failed_episodes": [e["index"] for e in r["rows"] if not e["success"]],
        }
        print(row, flush=True)
        rows.append(row)
    result = {
        "provenance": provenance(seed=args.seed, device="cpu"),
        "rows": rows,
        "protocol": "LIBERO: fixed init states 0..N-1 after 10 settle steps; "
        "robosuite/dm-control: seeds seed+i; success = any step solved "
        "within the task's max_steps",
    }
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
