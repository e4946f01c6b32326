"""Training the progress / success head (``rla-gym train-progress``).

Rows are single frames of every episode of a dataset (expert, noisy, failed, play, random: the more
kinds of failure the head sees, the less it mistakes "looks like a demo" for "done"), split by
episode. The shared trainer (:func:`rla_gym.utils.training.fit`) makes it resumable. Validation
reports the held-out success AUC and the false-positive rate of the success estimate at start
frames (frame 0 of every held-out episode), the two numbers the env's success estimate is judged
by. With ``proprio`` every row also carries the body vector of its frame
(:mod:`rla_gym.data.proprio`) and the head reads it beside the features; ``target="body_goal"``
(which needs ``proprio``) trains the head's goal branch on the body successful episodes reach and
reports its held-out error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rla_gym.data.episodes import EpisodeStore
from rla_gym.data.feature_episodes import load_body
from rla_gym.data.proprio import body_spec
from rla_gym.data.windows import RowSampler
from rla_gym.reward.progress import (
    DECAY_STEPS,
    GoalFrame,
    GoalSpace,
    ProgressHead,
    ProgressHeadConfig,
    ProgressTarget,
    head_inputs,
)
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.stats import roc_auc
from rla_gym.utils.training import TrainerConfig, TrainResult, fit

__all__ = [
    "TrainProgressConfig",
    "evaluate_progress_head",
    "load_head_rows",
    "train_progress_head",
]


@dataclass(frozen=True, kw_only=True)
class TrainProgressConfig:
    """Everything ``rla-gym train-progress`` needs."""

    data: str
    """Dataset folder (an ``EpisodeStore`` with cached features)."""
    encoder: str = "opennsfw-resnet50-res4"
    """Name of the cached feature encoder."""
    out: str = "runs/progress"
    """Output folder; the head is written to ``<out>/checkpoint``. Re-running resumes."""
    token_dim: int = 32
    """Per-token projection size (see :class:`ProgressHeadConfig`)."""
    hidden: int = 128
    """MLP width (see :class:`ProgressHeadConfig`)."""
    target: ProgressTarget = "fraction"
    """what progress means: fraction of the episode until success, decayed steps until
    success, or closeness of the body to the goal body read from the scene (body_goal, needs
    --proprio; see :class:`ProgressHeadConfig`)"""
    decay_steps: float = DECAY_STEPS
    """``steps`` target: progress ``exp(-steps to success / decay_steps)``"""
    goal_fields: tuple[str, ...] = ()
    """``body_goal`` target: the body fields the goal distance reads (default: all; reacher:
    shoulder_sin shoulder_cos wrist_sin wrist_cos)"""
    goal_scale: float = 1.0
    """``body_goal`` target: progress ``exp(-distance / goal_scale)`` (standardised body units)"""
    goal_space: GoalSpace = "body"
    """``body_goal`` target: the goal and the distance in the goal fields of the body, or at the
    effector's position (``effector``: reacher's fingertip; no ``--goal-fields``)"""
    goal_frame: GoalFrame = "last_success"
    """``body_goal`` target: which solved frame of a successful episode gives its goal body: the
    last, where the policy settled, or the first, at the edge of the success tolerance (reacher's
    real-outcome ranking: 0.68 against 0.53)"""
    val_fraction: float = 0.15
    """Fraction of episodes held out (split by episode id hash, as the other trainers)."""
    proprio: bool = False
    """also read the robot's body: every frame's body vector (the dataset's sim's, see
    rla_gym.data.proprio) beside its features"""
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            steps=1500,
            batch_size=128,
            learning_rate=1e-3,
            val_every=500,
            ckpt_every=500,
            tensorboard=False,
        )
    )
    """Optimisation and bookkeeping."""


def load_head_rows(
    store: EpisodeStore,
    encoder: str,
    ids: list[str],
    fingerprint: str | None = None,
    target: ProgressTarget = "fraction",
    decay_steps: float = DECAY_STEPS,
    proprio: bool = False,
    goal_frame: GoalFrame = "last_success",
) -> tuple[dict[str, np.ndarray], str, np.ndarray]:
    """Frames of episodes ``ids`` as head rows (``target``, ``decay_steps``: see
    :func:`~rla_gym.reward.progress.progress_targets`; ``proprio``: rows also carry each frame's
    body vector, :func:`~rla_gym.data.feature_episodes.load_body`; ``goal_frame``: see
    :func:`~rla_gym.reward.progress.goal_targets`).

    Returns:
        ``(rows, fingerprint, starts)``: :func:`~rla_gym.reward.progress.head_inputs` of the
        episodes, their encoder fingerprint, and the row index of every episode's frame 0.

    Raises:
        EncoderMismatchError: an episode was encoded by another encoder than ``fingerprint``
            (or than the first episode's).
        ValueError: ``proprio`` on a dataset whose sim has no body vector or an episode without
            proprio.
    """
    eps, starts, fp, n = [], [], fingerprint, 0
    for eid in ids:
        fe = store.load_features(eid, encoder, expected_fingerprint=fp)
        fp = fe.fingerprint
        starts.append(n)
        n += len(fe.features)
        eps.append((fe.features, fe.success))
    bodies = load_body(store.root, ids)[0] if proprio else None
    rows = head_inputs(eps, target, decay_steps, bodies, goal_frame)
    return rows, fp or "", np.asarray(starts, np.int64)


@torch.no_grad()
def evaluate_progress_head(
    head: ProgressHead, rows: dict[str, np.ndarray], starts: np.ndarray, batch_size: int = 512
) -> dict[str, float]:
    """Held-out metrics of a head.

    Args:
        head: the head (eval mode).
        rows: :func:`~rla_gym.reward.progress.head_inputs` of held-out episodes (with
            ``"proprio"`` for a head that reads the body).
        starts: row index of every held-out episode's frame 0.

    Returns:
        ``val/success_auc`` (``nan`` with one class), ``val/start_false_positive_rate`` (start
        frames the head calls solved), ``val/success_accuracy`` and ``val/progress_mae`` (rows
        with a known target). ``"body_goal"`` heads report, instead of the progress MAE,
        ``val/goal_error``: the mean distance between predicted and true goal body (goal fields,
        standardised units) over frames of successful episodes, beside
        ``val/goal_error_of_mean``: the same for always answering their mean goal (a head that
        does not read the goal off the scene).
    """
    dev = next(head.parameters()).device
    probs, prog, goals = [], [], []
    for b in RowSampler(rows).iter_all(batch_size):
        body = b.get("proprio")
        p, logit = head(b["s"].to(dev), None if body is None else body.to(dev))
        probs.append(torch.sigmoid(logit).cpu().numpy())
        prog.append(p.cpu().numpy())
        if "goal" in rows:
            goals.append(head.predict_goal(b["s"].to(dev)).cpu().numpy())
    prob, p_all = np.concatenate(probs), np.concatenate(prog)
    label = rows["success"] > 0.5
    try:
        auc = roc_auc(prob, label)
    except ValueError:
        auc = float("nan")
    out = {
        "val/success_auc": auc,
        "val/start_false_positive_rate": float((prob[starts] > 0.5).mean()),
        "val/success_accuracy": float(((prob > 0.5) == label).mean()),
    }
    if "goal" not in rows:
        known = np.isfinite(rows["progress"])
        out["val/progress_mae"] = float(np.abs(p_all[known] - rows["progress"][known]).mean())
        return out
    with torch.no_grad():
        true = head.goal_of(torch.from_numpy(rows["goal"]).to(dev))
    true = true.cpu().numpy()
    known = np.isfinite(true).all(1)
    if known.any():
        pred, true = np.concatenate(goals)[known], true[known]
        out["val/goal_error"] = float(np.linalg.norm(pred - true, axis=1).mean())
        out["val/goal_error_of_mean"] = float(np.linalg.norm(true - true.mean(0), axis=1).mean())
    return out


def _loss(
    model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, float]]:
    del generator  # deterministic given the batch
    base: ProgressHead = model.module if hasattr(model, "module") else model  # type: ignore[assignment]
    return base.loss(
        batch["s"],
        batch.get("progress"),
        batch["success"],
        batch.get("progress_max"),
        batch.get("proprio"),
        batch.get("goal"),
    )


def train_progress_head(cfg: TrainProgressConfig) -> TrainResult:
    """Train (or resume) a progress head on a dataset's episodes.

    Raises:
        ValueError: the dataset has no episodes; ``proprio`` on a dataset whose sim has no body
            vector; ``body_goal`` without ``proprio`` or with goal fields the body lacks.
        EncoderMismatchError: episodes encoded with different encoders.
    """
    store = EpisodeStore(cfg.data)
    fields: tuple[str, ...] = ()
    if cfg.proprio:
        sim = str(store.manifest().get("sim", ""))
        try:
            fields = body_spec(sim).fields
        except ValueError as e:
            raise ValueError(f"train-progress --proprio on {cfg.data}: {e}") from e
    try:  # before minutes of loading features
        # The head's own checks, on a stand-in for the sizes the features will give.
        ProgressHeadConfig(feature_dim=1, num_tokens=1, encoder_fingerprint="",
                           target=cfg.target, proprio_fields=fields, goal_fields=cfg.goal_fields,
                           goal_space=cfg.goal_space)  # fmt: skip
    except ValueError as e:
        raise ValueError(f"train-progress --target {cfg.target}: {e}") from e
    train_ids, val_ids = store.split(cfg.val_fraction, seed=cfg.trainer.seed)
    if not train_ids:
        raise ValueError(f"no episodes in {cfg.data}; run `rla-gym collect` and `encode` first")
    how = (cfg.target, cfg.decay_steps, cfg.proprio, cfg.goal_frame)
    rows, fp, _ = load_head_rows(store, cfg.encoder, train_ids, None, *how)
    val = load_head_rows(store, cfg.encoder, val_ids, fp, *how) if val_ids else None
    n, d = rows["s"].shape[1:]
    torch.manual_seed(cfg.trainer.seed)
    head = ProgressHead(
        ProgressHeadConfig(
            feature_dim=int(d),
            num_tokens=int(n),
            encoder_fingerprint=fp,
            token_dim=cfg.token_dim,
            hidden=cfg.hidden,
            target=cfg.target,
            decay_steps=cfg.decay_steps,
            proprio_fields=fields,
            goal_fields=cfg.goal_fields,
            goal_scale=cfg.goal_scale,
            goal_space=cfg.goal_space,
        )
    )
    if fields:
        head.fit_body_stats(rows["proprio"])
    meta: dict[str, Any] = {
        "data": str(Path(cfg.data)),
        "encoder": cfg.encoder,
        "train_episodes": len(train_ids),
        "val_episodes": len(val_ids),
        "train_rows": len(rows["s"]),
        "train_success_rows": int(rows["success"].sum()),
        "train_config": to_jsonable(cfg),
    }

    def val_fn(m: nn.Module) -> dict[str, float]:
        assert val is not None
        return evaluate_progress_head(m, val[0], val[2])  # type: ignore[arg-type]

    return fit(
        head,
        _loss,
        RowSampler(rows, cfg.trainer.seed),
        cfg.trainer,
        cfg.out,
        head.config.to_dict(),
        val_fn=val_fn if val else None,
        meta=meta,
    )
