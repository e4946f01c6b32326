"""Step 4 of a build: the success threshold (on real final frames, or on dreamed replays of the
calibration episodes) and the reward calibration; the train split chooses, the held-out split
reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rla_gym.envs.artifacts import nearest_demo
from rla_gym.pipelines.build_bundle.banks import FeatureBanks, mean_l1, ref_rows
from rla_gym.pipelines.build_bundle.sources import EpisodeSelection

if TYPE_CHECKING:
    from rla_gym.world_model.baselines import Predictor

__all__ = [
    "RealCalibration",
    "balanced_accuracy",
    "calibrate_dreamed",
    "calibrate_real",
    "calibrate_threshold",
    "closest_approach",
]


def balanced_accuracy(hit: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the rates at which ``hit`` calls successes successes and failures failures
    (``bool`` arrays of one length; a class that is absent counts as fully right; 0.5: chance)."""
    hit, labels = np.asarray(hit, bool), np.asarray(labels, bool)
    tpr = hit[labels].mean() if labels.any() else 1.0
    tnr = (~hit[~labels]).mean() if (~labels).any() else 1.0
    return float(0.5 * (tpr + tnr))


def calibrate_threshold(
    dists: np.ndarray, labels: np.ndarray
) -> tuple[float | None, float | None, str]:
    """Threshold on distance-to-goal that best separates successes (below) from failures.

    Maximises balanced accuracy over midpoints of the sorted distances; with only one class
    present it falls back to a margin around that class and says so.

    Returns:
        ``(threshold, train balanced accuracy, method)``.
    """
    if len(dists) == 0:
        return None, None, "no calibration episodes"
    pos, neg = dists[labels], dists[~labels]
    if len(neg) == 0:
        return float(pos.max() * 1.1), 1.0, "successes only: 1.1 x largest success distance"
    if len(pos) == 0:
        return float(neg.min() * 0.9), 1.0, "failures only: 0.9 x smallest failure distance"
    s = np.sort(np.unique(dists))
    cands = np.concatenate([[s[0] * 0.5], (s[1:] + s[:-1]) / 2, [s[-1] * 1.5]])
    best, best_acc = float(cands[0]), -1.0
    for c in cands:
        acc = balanced_accuracy(dists < c, labels)
        if acc > best_acc:
            best, best_acc = float(c), float(acc)
    return best, best_acc, "max balanced accuracy on train episodes"


def _success_record(
    dists: np.ndarray, labels: np.ndarray, held: np.ndarray, metric: str
) -> dict[str, Any]:
    """Threshold chosen on the train episodes, agreement measured on the held-out ones."""
    thr, train_acc, method = calibrate_threshold(dists[~held], labels[~held])
    held_acc = (
        float(((dists[held] < thr) == labels[held]).mean())
        if thr is not None and held.any()
        else None
    )
    return {
        "threshold": thr,
        "metric": metric,
        "method": method,
        "train_balanced_accuracy": train_acc,
        "heldout_agreement": held_acc,
        "train_episodes": int((~held).sum()),
        "train_successes": int(labels[~held].sum()),
        "heldout_episodes": int(held.sum()),
        "heldout_successes": int(labels[held].sum()),
    }


def closest_approach(ends: np.ndarray, goal: np.ndarray) -> float:
    """How close a dreamed episode came to its goal, as the env's success rule reads it: the
    smallest mean L1 of its chunk ends ``(E, N, D)`` to the goal ``(N, D)`` (the env declares
    success at the first chunk whose end is within the threshold, whatever follows)."""
    return float(mean_l1(np.asarray(ends, np.float32), np.asarray(goal, np.float32)).min())


# --------------------------------------------------------------------------- 4. calibration
@dataclass(frozen=True)
class RealCalibration:
    """Success and reward calibration on the real calibration episodes.

    Attributes:
        success: the manifest's success record on real final frames.
        reward: the manifest's reward-calibration record.
        demos: ``(E,)`` reference demo each calibration episode is aligned with.
        labels: ``bool (E,)`` real success of each calibration episode.
        heldout: ``bool (E,)`` whether it is in the held-out split.
    """

    success: dict[str, Any]
    reward: dict[str, Any]
    demos: list[int]
    labels: np.ndarray
    heldout: np.ndarray


def calibrate_real(sel: EpisodeSelection, banks: FeatureBanks, chunk: int) -> RealCalibration:
    """Success threshold on real final frames (train split chooses, held-out split reports).

    The distance is the mean L1 of an episode's final features to the goal of the reference demo
    whose frame 0 is nearest; the reward record is the aligned L1 of each episode's rows to that
    demo, the scale a dreamed rollout's ``reward_l1`` is read against.
    """
    goal, ref_frame0 = banks.goal, banks.reference[:, 0]
    dists, labels, held, real_l1, demos = [], [], [], [], []
    for e in sel.calibration:
        fe = sel.features[e]
        f = fe.features.astype(np.float32)
        d = nearest_demo(f[0], ref_frame0)
        demos.append(d)
        dists.append(float(mean_l1(f[-1], goal[d])))
        labels.append(bool(fe.success[-1]))
        held.append(e in sel.heldout)
        ep_rows = f[ref_rows(len(fe.actions), chunk)][1:]
        idx = np.minimum(np.arange(1, len(ep_rows) + 1), banks.reference_len[d] - 1)
        real_l1.append(float(mean_l1(ep_rows, banks.reference[d, idx]).mean()))
    labels_a, held_a = np.array(labels, bool), np.array(held, bool)
    success = _success_record(
        np.array(dists),
        labels_a,
        held_a,
        "mean L1 of real final-frame features to the aligned demo's goal",
    )
    reward = {
        "real_episode_aligned_l1_mean": float(np.mean(real_l1)) if real_l1 else None,
        "reference_row_change_l1_mean": banks.row_change,
        "note": "aligned L1 of real non-reference episodes to their nearest demo; a dreamed "
        "rollout with reward_l1 near this value tracks the demo as well as real data",
    }
    return RealCalibration(
        success=success, reward=reward, demos=demos, labels=labels_a, heldout=held_a
    )


def calibrate_dreamed(
    model: Predictor,
    sel: EpisodeSelection,
    banks: FeatureBanks,
    real: RealCalibration,
    chunk: int,
    seed: int,
    start_body: np.ndarray | None = None,
) -> dict[str, Any]:
    """Success threshold on dreamed chunk ends; the real-frame record is kept under
    ``real_frames``.

    The env applies the threshold to *dreamed* features, which are smoother than real ones; so
    each calibration episode's real actions are replayed in ``model`` (the bundle's stored,
    possibly quantised, world model) from its real first frame (and, for a model that dreams the
    body, its real first body vector: ``start_body (E, P)``, one row per calibration episode),
    and labelled by the episode's real success. The env declares success at the *first* chunk
    whose end is within the threshold, so an episode's score is its smallest distance over every
    dreamed chunk end, not only the last: scored on the last alone, the Lift threshold fired
    after the first chunk of nearly every closed-loop dream, failures included (the start is
    already close to the goal in the features; ``benchmarks/closed_loop.py``).
    """
    import torch

    goal = banks.goal
    gen = torch.Generator().manual_seed(seed)
    dists = []
    for j, (e, d) in enumerate(zip(sel.calibration, real.demos, strict=True)):
        ep = sel.features[e]
        acts = torch.from_numpy(np.asarray(ep.actions, np.float32))[None]
        pieces = [acts[:, i : i + chunk] for i in range(0, acts.shape[1], chunk)]
        s0 = torch.from_numpy(ep.features[0].astype(np.float32))[None]
        body = {} if start_body is None else {"proprio": torch.from_numpy(start_body[j : j + 1])}
        with torch.no_grad():
            out = model.rollout(s0, pieces, generator=gen, **body)
        # A body model's rollout is (features, bodies); the threshold reads the features.
        ends = (out[0] if isinstance(out, tuple) else out)[0].numpy()  # (E, N, D) chunk ends
        dists.append(closest_approach(ends, goal[d]))
    record = _success_record(
        np.array(dists),
        real.labels,
        real.heldout,
        "smallest mean L1 to the aligned demo's goal over the dreamed chunk ends (the "
        "episode's real actions replayed from its real first frame), as the env reads it",
    )
    return {**record, "real_frames": real.success}
