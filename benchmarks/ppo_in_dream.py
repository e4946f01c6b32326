"""Does PPO climb its own objective in the dream? The optimiser study behind the main job.

The main job used to lower its own dreamed return (LIBERO: bc -3.98, final -4.27). This runs
residual PPO around the LIBERO bundle's base in the dream (:func:`rla_gym.pipelines.wmrl.run_wmrl`,
no real evaluation) in a few arms that differ in one lever each, all with the same budget, and
judges each final policy against the base on every reset-bank start with the same flow noise
(paired: mean difference of imagined return, 95 % t-interval, starts won and lost), by the
optimiser's health over training (mean approximate KL per iteration, share of iterations stopped
early by the target KL, the critic's explained variance) and in the real simulator on the same
init states as the base (``--real-episodes``; the base is evaluated once). Arms:

* ``plain, aligned, lr 3e-4``: the main job before groups (32 envs, each its own start);
* ``groups of 8, aligned, lr 1e-4``: common random numbers and the paper's rate (the main job now);
* ``plain, progress, lr 1e-4`` and ``groups of 8, progress, lr 1e-4``: the bundle's progress head
  as the reward;
* ``groups of 8, goal, lr 1e-4``: the goal reward (L1 to the reference demo's last frame), the
  one whose answer to a small change of the base's actions survives new flow noise on LIBERO
  (``reward_signal.py``), where the aligned reward's does not;
* ``..., residual 0.02``: the residual may move each action by 0.02 instead of 0.1 (LIBERO's base
  with action noise of std 0.1 halves its real success, ``closed_loop.py``).

Writes ``benchmarks/results/ppo_in_dream.json``; every arm resumes from its run folder.

    python benchmarks/ppo_in_dream.py                      # ~25 min on 2 cores
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from rla_gym.pipelines.wmrl import WMRLConfig, run_wmrl
from rla_gym.utils import load_json, provenance, save_json

ARMS: dict[str, dict] = {
    "plain, aligned, lr 3e-4": dict(group_size=1, num_envs=32, learning_rate=3e-4,
                                    reward_mode="aligned"),
    "groups of 8, aligned, lr 1e-4": dict(group_size=8, learning_rate=1e-4, reward_mode="aligned"),
    "plain, progress, lr 1e-4": dict(group_size=1, learning_rate=1e-4, reward_mode="progress"),
    "groups of 8, progress, lr 1e-4": dict(group_size=8, learning_rate=1e-4,
                                           reward_mode="progress"),
    "groups of 8, goal, lr 1e-4": dict(group_size=8, learning_rate=1e-4, reward_mode="goal"),
    "groups of 8, progress, lr 1e-4, residual 0.02": dict(group_size=8, learning_rate=1e-4,
                                                          reward_mode="progress",
                                                          residual_scale=0.02),
}  # fmt: skip


@dataclass(frozen=True)
class Args:
    suite: str = "libero"
    """embedded bundle"""
    ppo_steps: int = 12_288
    """dream env steps per arm (the main job's budget)"""
    real_episodes: int = 10
    """real-simulator episodes per policy (LIBERO init states 0..n-1; 0 skips reality)"""
    seeds: tuple[int, ...] = (0,)
    """PPO seeds per arm"""
    arms: tuple[str, ...] = tuple(ARMS)
    """which arms to run"""
    runs: Path = Path("runs/ppo_in_dream")
    """run folders (resumable)"""
    out: Path = Path("benchmarks/results/ppo_in_dream.json")
    """result file"""


def _real(r: dict) -> dict:
    """The counts of a real evaluation, with its per-episode outcomes for pairing."""
    return {"success": r["successes"], "episodes": r["episodes"], "wilson95": r["wilson95"],
            "per_episode": [row["success"] for row in r["rows"]]}  # fmt: skip


def arm_result(report: dict) -> dict:
    """Paired imagined comparison and the optimiser's health of one run of :func:`run_wmrl`."""
    final, hist = report["policies"]["bc+ppo"], report["ppo"]["history"]
    curve = [h["return"] for h in hist if h["return"] is not None]
    mean = lambda k: float(np.mean([h[k] for h in hist]))  # noqa: E731
    return {
        "reward_mode": report["reward_mode"],
        # Runs made before the env's auto estimate read the goal distance read the head.
        "success_estimate": report.get("success_estimate", "progress_head"),
        "imagined_return": {
            "bc": report["policies"]["bc"]["dream"]["mean_return"],
            "bc+ppo": final["dream"]["mean_return"],
        },
        "imagined_success": {
            "bc": report["policies"]["bc"]["dream"]["successes"],
            "bc+ppo": final["dream"]["successes"],
            "episodes": final["dream"]["episodes"],
        },
        "vs_bc": final["vs_bc"],
        "approx_kl": mean("approx_kl"),
        "early_stopped": mean("early_stopped"),
        "explained_variance": mean("explained_variance"),
        "training_curve": {
            "first": curve[0] if curve else None,
            "last": curve[-1] if curve else None,
        },
        "ppo_wall_clock_s": report["ppo"]["wall_clock_s"],
    }


def main(args: Args) -> None:
    torch.set_num_threads(1)
    result = load_json(args.out) if args.out.exists() else {"suite": args.suite, "arms": {}}
    for name in args.arms:
        for seed in args.seeds:
            key = f"{name} / seed {seed}"
            if key in result["arms"]:
                continue
            t0 = time.perf_counter()
            folder = args.runs / name.replace(", ", "_").replace(" ", "-") / f"seed{seed}"
            report = run_wmrl(
                WMRLConfig(suite=args.suite, out=folder, ppo_steps=args.ppo_steps, seed=seed,
                           eval_episodes=args.real_episodes, snapshots=0, progress=False,
                           real_policies=("bc+ppo",) if "base_real" in result else ("bc", "bc+ppo"),
                           **ARMS[name])
            )  # fmt: skip
            if "real" in report["policies"]["bc"]:
                result["base_real"] = _real(report["policies"]["bc"]["real"])
            result["arms"][key] = {**arm_result(report), "arm": name, "seed": seed,
                                   "wall_clock_s": time.perf_counter() - t0}  # fmt: skip
            if "real" in report["policies"]["bc+ppo"]:
                result["arms"][key]["real"] = _real(report["policies"]["bc+ppo"]["real"])
            result["provenance"] = provenance(
                seed=seed, encoder=report["encoder"], device="cpu", ppo_steps=args.ppo_steps
            )
            save_json(result, args.out)
            vs = result["arms"][key]["vs_bc"]["returns"]
            print(f"{key}: {vs['mean']:+.3f} [{vs['ci95'][0]:+.3f}, {vs['ci95'][1]:+.3f}]")


if __name__ == "__main__":
    main(tyro.cli(Args))
