"""Does the dreamed env's success estimate tell solved frames from unsolved ones?

Per suite, on every frame of held-out real episodes (the progress head's validation split of the
dataset it was trained on: episodes neither estimator was fitted on), two estimators are scored:

* ``progress_head``: the bundle's learned head (``P(success)`` from its logit) — what the env's
  ``is_success_estimate`` uses when the bundle ships a head;
* ``goal_distance``: the older rule, mean L1 to the aligned reference demo's final frame below the
  bundle's calibrated threshold (score: minus the distance).

``auc``: per-frame ROC AUC against the recorded success flag; ``start_false_positive_rate``: the
share of episode start frames (frame 0) the estimator calls solved. The top-level
``{"<suite>": {"auc", "start_false_positive_rate"}}`` is the env's estimator (the head).

    python benchmarks/success_estimate.py --data robosuite-lift=data/robosuite_lift
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from rla_gym.utils import load_json, provenance, save_json

SUITES = ("libero", "robosuite-lift", "dmc-reacher")


@dataclass(frozen=True)
class Args:
    data: tuple[str, ...] = ()
    """``suite=dataset`` pairs: the data each suite's head was trained on (its split is reused)"""
    out: Path = Path("benchmarks/results/success_estimate.json")
    """result JSON (suites are merged into it)"""


def score_suite(suite: str, data: Path) -> dict[str, Any]:
    """Both estimators on the held-out episodes of ``data`` for the ``suite`` bundle."""
    import torch

    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.envs.artifacts import load_artifacts, nearest_demo
    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.reward.train_progress import evaluate_progress_head, load_head_rows
    from rla_gym.utils.stats import roc_auc

    art = load_artifacts(resolve_artifacts(None, suite))
    head = art.load_progress_head()
    meta = load_json(art.path / "progress" / "meta.json")
    tc = meta["train_config"]
    store = EpisodeStore(data)
    _, val_ids = store.split(tc["val_fraction"], seed=tc["trainer"]["seed"])
    fp = art.manifest["encoder_fingerprint"]
    rows, _, starts = load_head_rows(
        store, tc["encoder"], val_ids, fp, head.config.target, head.config.decay_steps
    )
    with torch.no_grad():
        head_metrics = evaluate_progress_head(head, rows, starts)
    # The goal-distance rule, as the bundle applies it (threshold from its manifest).
    ref0, goal = (
        art.reference[:, 0],
        art.reference[np.arange(len(art.reference)), art.reference_len - 1],
    )
    # Each episode's frames against the goal of the demo its first frame aligns with.
    ends = [*starts[1:], len(rows["s"])]
    feats = rows["s"].astype(np.float32)
    dist = np.concatenate(
        [
            np.abs(feats[a:b] - goal[nearest_demo(feats[a], ref0)][None]).mean(axis=(1, 2))
            for a, b in zip(starts, ends, strict=True)
        ]
    )
    label = rows["success"] > 0.5
    thr = art.success_threshold
    return {
        "auc": head_metrics["val/success_auc"],
        "start_false_positive_rate": head_metrics["val/start_false_positive_rate"],
        "progress_head": head_metrics,
        "goal_distance": {
            "auc": roc_auc(-dist, label),
            "start_false_positive_rate": (
                float((dist[starts] < thr).mean()) if thr is not None else None
            ),
            "threshold": thr,
        },
        "heldout_episodes": len(starts),
        "frames": len(label),
        "success_frames": int(label.sum()),
        "data": str(data),
        "head": {k: meta.get(k) for k in ("step", "wall_clock_s", "train_episodes")},
    }


def main(args: Args) -> dict[str, Any]:
    pairs = dict(p.split("=", 1) for p in args.data)
    unknown = sorted(set(pairs) - set(SUITES))
    if unknown:
        raise SystemExit(f"unknown suites {unknown}; choose from {SUITES}")
    result: dict[str, Any] = load_json(args.out) if args.out.exists() else {}
    for suite, data in pairs.items():
        result[suite] = score_suite(suite, Path(data))
        r = result[suite]
        print(
            f"{suite:<15} head AUC {r['auc']:.3f}, start FP {r['start_false_positive_rate']:.2f}"
            f" | goal-distance AUC {r['goal_distance']['auc']:.3f}, start FP "
            f"{r['goal_distance']['start_false_positive_rate']}"
        )
    result["provenance"] = provenance(seed=0, encoder="opennsfw-resnet50-res4", device="cpu")
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
