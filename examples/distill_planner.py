"""Distil the dream planner into a policy that runs at behaviour-cloning cost.

1. ``record_plans``: the MPC controller (``DreamPlanner``: CEM over chunks in the batched dream)
   runs one dreamed episode from each of the first ``--starts`` reset-bank starts and records
   ``(features, planned chunk)`` pairs.
2. ``distill``: behaviour cloning (``rla_gym.agents.train_bc``) fits a residual head on the
   bundle's frozen BC policy to those chunks (residual planning), or a fresh policy (planning
   from scratch). The result is an ordinary ``ActorCritic`` folder.
3. The base and the distilled policy are rolled out in the dream from the same starts (imagined
   return), and with ``--eval-episodes`` in the real simulator; ``rla-gym eval --policy
   <out>/policy`` does the same afterwards.

    python examples/distill_planner.py --suite robosuite-lift --starts 20 --residual-scale 0.2
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from rla_gym.planning import PlannerConfig


@dataclass(frozen=True, kw_only=True)
class Args:
    suite: str = "robosuite-lift"
    """embedded bundle: libero, robosuite-lift or dmc-reacher"""
    artifacts: str | None = None
    """bundle folder (default: the suite's embedded bundle)"""
    starts: int = 20
    """reset-bank starts 0..starts-1 the planner is recorded from (one dreamed episode each)"""
    planner: PlannerConfig = field(default_factory=lambda: PlannerConfig(residual_scale=0.2))
    """planner options (residual around the bundle's BC policy by default)"""
    bc_steps: int = 500
    """behaviour-cloning optimizer steps on the recorded pairs"""
    eval_episodes: int = 0
    """real-simulator episodes per policy (0: dream only)"""
    eval_max_steps: int | None = None
    """control-step limit of a real episode (default: the task's)"""
    seed: int = 0
    """seed of the dreamed episodes, plans and real resets"""
    out: Path = Path("runs/distill_planner")
    """output folder: policy/ and report.json"""


def main(args: Args) -> dict:
    import torch

    from rla_gym.agents import ActorCritic, BCConfig
    from rla_gym.envs.rla_world import RLAWorldConfig
    from rla_gym.envs.vector import RLAWorldVectorEnv
    from rla_gym.pipelines.wmrl import dream_evaluate
    from rla_gym.planning import DreamPlanner, MPCController, distill, record_plans
    from rla_gym.utils import save_json

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    planner = DreamPlanner(RLAWorldConfig(suite=args.suite, artifacts=args.artifacts), args.planner)
    bundle = planner.core.bundle_path
    starts = list(range(min(args.starts, len(planner.core.reset_features))))
    data = record_plans(MPCController(planner), starts, seed=args.seed)
    base = ActorCritic.load(bundle / "policy")
    policy = distill(
        data["features"],
        data["chunks"],
        base_policy=base if args.planner.residual else None,
        residual_scale=args.planner.residual_scale,
        bc_config=BCConfig(steps=args.bc_steps, seed=args.seed),
    )
    policy_dir = policy.save(args.out / "policy")

    venv = RLAWorldVectorEnv(len(starts), config=planner.env_config)
    report = {
        "suite": args.suite,
        "bundle": str(bundle),
        "planner": dataclasses.asdict(args.planner),
        "pairs": len(data["chunks"]),
        "plan_seconds": float(data["plan_seconds"].mean()),
        "dream": {
            "planner": float(data["returns"].mean()),
            "bc": dream_evaluate(base, venv, starts, seed=args.seed)["mean_return"],
            "distilled": dream_evaluate(policy, venv, starts, seed=args.seed)["mean_return"],
        },
    }
    if args.eval_episodes > 0:
        from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim

        m = planner.core.manifest
        real = RealEvalConfig.for_bundle(
            m,
            episodes=args.eval_episodes,
            max_steps=args.eval_max_steps,
            workers=1,
            seed=args.seed,
        )
        report["real"] = {}
        for name, path in (("bc", bundle / "policy"), ("distilled", policy_dir)):
            r = evaluate_in_sim(SavedPolicy(str(path)), real, progress=False)
            report["real"][name] = {
                "success": r["successes"],
                "episodes": r["episodes"],
                "return": r["mean_return"],
            }
    report["wall_clock_s"] = time.perf_counter() - t0
    save_json(report, args.out / "report.json")
    print(report)
    return report


if __name__ == "__main__":
    main(tyro.cli(Args, config=(tyro.conf.OmitArgPrefixes,)))
