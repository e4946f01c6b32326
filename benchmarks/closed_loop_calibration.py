"""Can any success threshold tell the dream's closed-loop successes from its failures?

``closed_loop.py`` finds the Lift dream rating perturbed bases far above reality (noise 0.3:
18/20 imagined, 3/20 real). Is that the success estimate, whose threshold was calibrated on
*open-loop* replays of recorded actions, or the dream, which shows the perturbed policy lifting
the cube? Here the estimate is calibrated where it is used: on closed-loop dreams of the
episodes ``rla-gym record`` wrote (the bundle's base, perturbed as each episode's ``policy_*``
metadata says; starts and seeds of their own, 100000+, clear of ``closed_loop.py``'s).

Per suite and recorded episode: the same perturbed base runs closed loop in the dream from the
episode's encoded first frame for the task's control-step limit (its perturbation draws from the
episode's own seed, as in reality), and the episode's **closest approach** (the smallest mean L1
of a dreamed chunk end to the aligned demo's goal, as the env reads its threshold) is set against
its **real** success. Reported: the balanced accuracy of the bundle's own threshold and of the
best threshold there is (the bundle build's rule, ``calibrate_threshold``: chosen on the even
episodes and read on the odd ones, and in-sample on all), beside the env's progress head read on
the same dreams; per perturbation, imagined
(bundle's threshold, best threshold, head) against real successes. A high best accuracy means a
recalibration would close the gap; a low one means the dream itself shows failures as successes.

Writes ``benchmarks/results/closed_loop_calibration.json``.

    python benchmarks/closed_loop_calibration.py         # Lift and LIBERO, ~5 min on 2 cores
    python benchmarks/closed_loop_calibration.py --suites robosuite-lift \\
        --data robosuite-lift=data/robosuite_lift_onpolicy --limit 4 --out /tmp/clc.json  # smoke
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from counterfactual import suite_paths

from rla_gym.data.episodes import EpisodeStore
from rla_gym.envs.artifacts import load_artifacts
from rla_gym.envs.config import RLAWorldConfig
from rla_gym.envs.rla_world import resolve_artifacts
from rla_gym.envs.vector import RLAWorldVectorEnv
from rla_gym.evaluation.dream_vs_real import dream_rollouts
from rla_gym.evaluation.perturbed import Perturbed
from rla_gym.pipelines.build_bundle import balanced_accuracy, calibrate_threshold, closest_approach
from rla_gym.utils import load_json, provenance, save_json

DATA = {
    "robosuite-lift": "data/robosuite_lift_onpolicy",
    "libero": "data/libero_object_0_onpolicy",
}


@dataclass(frozen=True)
class Args:
    suites: tuple[str, ...] = ("robosuite-lift", "libero")
    data: tuple[str, ...] = ()
    """``suite=folder`` of encoded ``rla-gym record`` episodes (default: the datasets of
    docs/reproduce.md#the-bases-own-episodes)"""
    limit: int | None = None
    """episodes per perturbation (default: all)"""
    flow_steps: int = 5
    out: Path = Path("benchmarks/results/closed_loop_calibration.json")


def best_threshold(dist: np.ndarray, label: np.ndarray) -> float:
    """The threshold (success: ``dist < t``) a bundle build would choose on these episodes."""
    threshold, _, _ = calibrate_threshold(dist, label)
    assert threshold is not None  # there are episodes
    return threshold


def recorded(store: EpisodeStore, encoder: str, limit: int | None) -> dict[tuple, list[dict]]:
    """The store's recorded episodes grouped by perturbation ``(name, noise, mix, every)``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for eid in store.episode_ids():
        meta = store.read(eid, frames=False).meta
        if "policy_noise" not in meta:
            continue  # not a recorded closed-loop episode
        key = (meta["policy"], float(meta["policy_noise"]), float(meta["policy_mix"]),
               int(meta["policy_every"]))  # fmt: skip
        if limit is not None and len(groups[key]) >= limit:
            continue
        fe = store.load_features(eid, encoder)
        start = fe.features[0].astype(np.float32)
        groups[key].append({"id": eid, "start": start, "seed": int(meta["seed"]),
                            "real": bool(meta["success_any"])})  # fmt: skip
    return groups


def measure(suite: str, data: str, args: Args) -> dict[str, Any]:
    bundle = resolve_artifacts(None, suite)
    art = load_artifacts(bundle)
    man = art.manifest
    chunk, size = int(man["chunk"]), int(man["chunk"]) * int(man["action_dim"])
    chunks = math.ceil(int(man["task_max_steps"]) / chunk)
    goal = art.reference[:, -1]  # each demo's goal, as the env's reward reads it
    groups = recorded(EpisodeStore(data), man["encoder"], args.limit)
    rows: list[dict[str, Any]] = []
    for (name, noise, mix, every), eps in groups.items():
        spec = Perturbed(str(bundle / "policy"), size, noise, mix, every)
        starts = np.stack([e["start"] for e in eps])
        # One dream per episode: the head's estimate is the env's, the goal distance is read off
        # the dreamed chunk ends it keeps.
        cfg = RLAWorldConfig(
            artifacts=str(bundle),
            device="cpu",
            flow_steps=args.flow_steps,
            max_episode_steps=chunks,
            success_estimate="progress_head",
        )
        venv = RLAWorldVectorEnv(len(eps), config=cfg)
        policy = spec()
        policy.reset([e["seed"] for e in eps])  # each episode's own perturbation draws
        out = dream_rollouts(venv, policy=policy, features=starts, seed=0, keep_features=True)
        venv.close()
        for j, e in enumerate(eps):
            closest = closest_approach(out["features"][j], goal[out["demo"][j]])
            rows.append({"id": e["id"], "perturbation": name, "real": e["real"],
                         "closest": closest, "head": bool(out["success"][j].any())})  # fmt: skip
    dist = np.array([r["closest"] for r in rows])
    real = np.array([r["real"] for r in rows])
    head = np.array([r["head"] for r in rows])
    even = np.arange(len(rows)) % 2 == 0
    shipped = float(art.success_threshold)
    t_all, t_even = best_threshold(dist, real), best_threshold(dist[even], real[even])
    per = {}
    for name in dict.fromkeys(r["perturbation"] for r in rows):
        m = np.array([r["perturbation"] == name for r in rows])
        per[name] = {"episodes": int(m.sum()), "real": int(real[m].sum()),
                     "bundle_threshold": int((dist[m] < shipped).sum()),
                     "best_threshold": int((dist[m] < t_all).sum()),
                     "progress_head": int(head[m].sum())}  # fmt: skip
    return {
        "bundle": str(bundle),
        "bundle_created_utc": man["created_utc"],
        "data": data,
        "episodes": len(rows),
        "real_successes": int(real.sum()),
        "chunks": chunks,
        "bundle_threshold": shipped,
        "bundle_threshold_accuracy": balanced_accuracy(dist < shipped, real),
        "best_threshold": t_all,
        "best_threshold_accuracy": balanced_accuracy(dist < t_all, real),
        "heldout_threshold": t_even,
        "heldout_accuracy": balanced_accuracy(dist[~even] < t_even, real[~even]),
        "progress_head_accuracy": balanced_accuracy(head, real),
        "perturbations": per,
        "rows": rows,
    }


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    data = {**DATA, **suite_paths(args.data, "data")}
    result = load_json(args.out) if args.out.exists() else {"suites": {}}
    for suite in args.suites:
        t0 = time.perf_counter()
        entry = measure(suite, data[suite], args)
        entry["minutes"] = (time.perf_counter() - t0) / 60
        result["suites"][suite] = entry
        result["provenance"] = provenance(seed=0, encoder="bundle's", device="cpu")
        save_json(result, args.out)
        e = entry
        print(f"{suite}: {e['episodes']} recorded episodes ({e['real_successes']} real "
              f"successes); balanced accuracy: bundle's threshold "
              f"{e['bundle_threshold_accuracy']:.2f}, best {e['best_threshold_accuracy']:.2f}"
              f" (held-out {e['heldout_accuracy']:.2f}), progress head "
              f"{e['progress_head_accuracy']:.2f}", flush=True)  # fmt: skip
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
