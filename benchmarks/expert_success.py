"""Scripted-expert success rates with Wilson 95 % intervals, in the real simulators.

LIBERO runs over the task's 50 fixed init states; robosuite and dm-control over 50 seeds. Rendering
is off (experts read privileged state), episodes run in parallel worker processes.

    python benchmarks/expert_success.py
    python benchmarks/expert_success.py --sims libero --episodes 10
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from rla_gym.utils import provenance, save_json
from rla_gym.utils.parallel import imap_workers
from rla_gym.utils.stats import wilson_interval


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


def _worker(args: tuple[str, str, int], indices: list[int], emit) -> None:
    from rla_gym.sims.factory import make_sim
    from rla_gym.sims.policies import make_policy

    sim_name, policy_kind, seed = args
    sim = make_sim(sim_name, render=False)
    try:
        for index in indices:
            init_id = index if sim.num_init_states else None
            obs = sim.reset(seed=seed + index, init_state_id=init_id)
            policy = make_policy(policy_kind, sim, seed=seed + index)
            policy.reset(obs)
            result = (index, False, sim.max_steps)
            for t in range(sim.max_steps):
                obs = sim.step(policy(obs))
                if obs.success:
                    result = (index, True, t + 1)
                    break
            emit(result)
    finally:
        sim.close()


def main(args: Args) -> dict:
    rows = []
    for sim_name in args.sims:
        t0 = time.perf_counter()
        results = list(imap_workers(_worker, (sim_name, args.policy, args.seed),
                                    range(args.episodes), args.workers, desc=sim_name))
        k = sum(ok for _, ok, _ in results)
        lo, hi = wilson_interval(k, len(results))
        lengths = [n for _, ok, n in results if ok]
        row = {"sim": sim_name, "policy": args.policy, "episodes": len(results), "successes": k,
               "success_rate": k / len(results), "wilson95": [round(lo, 4), round(hi, 4)],
               "mean_success_length": sum(lengths) / max(len(lengths), 1),
               "wall_clock_s": round(time.perf_counter() - t0, 1),
               "failed_episodes": sorted(i for i, ok, _ in results if not ok)}
        print(row, flush=True)
        rows.append(row)
    result = {"provenance": provenance(seed=args.seed, device="cpu"), "rows": rows,
              "protocol": "LIBERO: fixed init states 0..N-1 after 10 settle steps; "
                          "robosuite/dm-control: seeds seed+i; success = any step solved "
                          "within the task's max_steps"}
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
