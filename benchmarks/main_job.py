"""The main job's printout as a result file: every saved policy's imagined return and success,
paired with the base, beside the real successes of the base and the final policy.

Reads the ``report.json`` of a finished ``python examples/train_ppo_in_wm.py --out RUN`` (PPO,
imagined and real evaluation all done there) and writes ``benchmarks/results/main_job.json``
under the run's reward mode, so runs on different rewards sit side by side:

    python examples/train_ppo_in_wm.py --reward-mode progress --out runs/wmrl_progress
    python benchmarks/main_job.py --run runs/wmrl_progress
    python benchmarks/main_job.py --name "progress, residual 0.02, 50 init states" \
        --run "runs/ppo_in_dream/groups-of-8_progress_lr-1e-4_residual-0.02/seed0"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from rla_gym.utils import load_json, save_json


@dataclass(frozen=True)
class Args:
    run: Path = Path("runs/wmrl")
    """folder of a finished main job"""
    out: Path = Path("benchmarks/results/main_job.json")
    """result file (one entry per reward mode, or per ``name``)"""
    name: str | None = None
    """the run's entry (default: its reward mode)"""


def summary(report: dict) -> dict:
    """One main-job report -> its policies' imagined and real numbers."""
    policies = {}
    for name, p in report["policies"].items():
        dream, real = p["dream"], p.get("real")
        policies[name] = {
            "steps": p["steps"],
            "imagined": {"success": dream["successes"], "episodes": dream["episodes"],
                         "return": dream["mean_return"]},
            "vs_bc": p.get("vs_bc"),
            "real": None if real is None else {"success": real["successes"],
                                               "episodes": real["episodes"]},
        }  # fmt: skip
    return {
        "suite": report["suite"],
        "reward_mode": report["reward_mode"],
        "ppo": {k: report["ppo"][k] for k in ("env_steps", "wall_clock_s")},
        "wall_clock_s": report["wall_clock_s"],
        "config": report["config"],
        "policies": policies,
        "provenance": report["provenance"],
    }


def main(args: Args) -> None:
    report = load_json(args.run / "report.json")
    result = load_json(args.out) if args.out.exists() else {"runs": {}}
    name = args.name or report["reward_mode"]
    result["runs"][name] = summary(report)
    save_json(result, args.out)
    print(f"{args.out}: {name} run of {args.run}")


if __name__ == "__main__":
    main(tyro.cli(Args))
