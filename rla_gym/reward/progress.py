"""A learned progress / success head on patch features (``reward_mode="progress"``).

The video-aligned reward asks "how close is this frame to the reference demo at the same time?",
which says little about whether a *different* trajectory is getting the task done, and its success
estimate is a single distance threshold. This head is trained on real episodes of every kind the
dataset holds (expert, noisy, failed, play, random), never on simulator state at run time:

* **success**: a logit for "the task is solved in this frame" (the per-frame ``success`` flag the
  collector recorded);
* **progress**: in ``[0, 1]``, with one of two meanings (``ProgressHeadConfig.target``):

  - ``"fraction"`` (the first heads): on successful episodes ``min(t / t_success, 1)`` where
    ``t_success`` is the first solved frame; a failed episode's true progress is unknown, so only
    its frame 0 gets a target (0) and its other frames are merely kept below 0.8 (a hinge),
    besides teaching the success logit that they are not solved. One frame cannot say how far
    along its episode is (the same pose is early in a short reach and late in a long one).
  - ``"steps"``: ``exp(-(steps until success) / decay_steps)``, a property of the frame's state
    under the data's policies rather than of the episode it came from. A failed episode's frame
    ``t`` of ``T`` is at least ``T + 1 - t`` steps from success, so its progress is kept below
    ``exp(-(T + 1 - t) / decay_steps)`` (a hinge).
  - ``"body_goal"``: ``exp(-||body - goal|| / goal_scale)``, where a goal branch reads the *goal
    body* off the scene: the (standardised) body a successful episode ends in. Reacher's target
    is a sphere in the frame and a solved episode ends with the finger on it, so its last body
    is a joint configuration that reaches that episode's target; with the body known exactly,
    "how far from done" becomes a distance in joint space. Every frame of a successful episode
    is labelled with the episode's body at its last solved frame (by default; its first solved
    frame is at the edge of the tolerance, and ranked reacher's outcomes at 0.53 against 0.68);
    failed episodes have no goal label (they still teach the success logit).

The network is deliberately small (per-token projection, concatenation, MLP) so it adds little to a
bundle and runs at dream speed. A head with ``proprio_fields`` also reads the robot's body
(:mod:`rla_gym.data.proprio`): some of what "done" means is where the arm is, which a few patch
tokens show only coarsely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rla_gym.data.proprio import check_body, effector_position
from rla_gym.errors import EncoderMismatchError
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint

__all__ = [
    "GoalFrame",
    "ProgressHead",
    "ProgressHeadConfig",
    "ProgressTarget",
    "goal_index",
    "goal_targets",
    "head_inputs",
    "progress_targets",
]

ProgressTarget = Literal["fraction", "steps", "body_goal"]
TARGETS: tuple[ProgressTarget, ...] = ("fraction", "steps", "body_goal")
"""Every value of :attr:`ProgressHeadConfig.target`."""

GoalSpace = Literal["body", "effector"]
"""Where a ``"body_goal"`` head's goal lives (:attr:`ProgressHeadConfig.goal_space`)."""

GoalFrame = Literal["first_success", "last_success"]
"""Which solved frame of a successful episode gives its goal-body label (:func:`goal_targets`)."""

FRACTION_CAP = 0.8
"""Where the ``"fraction"`` target keeps the progress of frames of failed episodes below."""

DECAY_STEPS = 16.0
"""Default ``decay_steps`` of the ``"steps"`` target: two chunks of 8 to success read ``1/e``."""


@dataclass(frozen=True, kw_only=True)
class ProgressHeadConfig:
    """Sizes of :class:`ProgressHead` and the features it reads."""

    feature_dim: int
    """``D``: channels of a patch token."""
    num_tokens: int
    """``N``: patch tokens per frame."""
    encoder_fingerprint: str
    """Fingerprint of the encoder whose features the head was trained on."""
    token_dim: int = 32
    """Per-token projection size before pooling."""
    hidden: int = 128
    """Hidden width of the MLP after pooling."""
    target: ProgressTarget = "fraction"
    """What progress means: ``"fraction"`` of the episode until success, ``"steps"``: decayed
    control steps until success, or ``"body_goal"``: closeness of the body to the goal body read
    from the scene (needs ``proprio_fields``; see the module docstring)."""
    decay_steps: float = DECAY_STEPS
    """``"steps"``: progress ``exp(-steps / decay_steps)``."""
    proprio_fields: tuple[str, ...] = ()
    """The body vector the head also reads (:mod:`rla_gym.data.proprio`; e.g. reacher's six
    ``shoulder_sin ... wrist_vel``). Non-empty: the standardised body is embedded as one more
    ``token_dim`` vector beside the tokens. Empty: features only (every head before 2026-12)."""
    goal_fields: tuple[str, ...] = ()
    """``"body_goal"``: the body fields the goal is predicted for and the distance reads (empty:
    all of ``proprio_fields``). Reacher: the four ``*_sin`` / ``*_cos``, since a solved episode
    ends *at* a pose but not at a particular speed."""
    goal_scale: float = 1.0
    """``"body_goal"``: progress ``exp(-distance / goal_scale)``, the distance in standardised
    body units."""
    goal_space: GoalSpace = "body"
    """``"body_goal"``: where the goal and the distance live: ``"body"``, the goal fields of the
    body vector, or ``"effector"``, the effector's position
    (:func:`~rla_gym.data.proprio.effector_position`: reacher's fingertip), standardised; one
    place the effector must reach, where the joint angles that reach it are not unique."""

    def __post_init__(self) -> None:
        # JSON gives lists; the frozen config keeps hashable tuples.
        object.__setattr__(self, "proprio_fields", tuple(str(f) for f in self.proprio_fields))
        object.__setattr__(self, "goal_fields", tuple(str(f) for f in self.goal_fields))
        if min(self.feature_dim, self.num_tokens, self.token_dim, self.hidden) < 1:
            raise ValueError(f"all sizes must be >= 1, got {self}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if not self.decay_steps > 0:
            raise ValueError(f"decay_steps must be > 0, got {self.decay_steps}")
        if not self.goal_scale > 0:
            raise ValueError(f"goal_scale must be > 0, got {self.goal_scale}")
        goal_index(self.target, self.proprio_fields, self.goal_fields)  # refuses a bad pairing
        if self.goal_space not in ("body", "effector"):
            raise ValueError(f"goal_space must be 'body' or 'effector', got {self.goal_space!r}")
        if self.goal_space == "effector":
            if self.target != "body_goal" or self.goal_fields:
                raise ValueError(
                    "goal_space='effector' places the goal at the effector, read off the whole "
                    "body: it needs target='body_goal' and no goal_fields"
                )
            _ = self.goal_dim  # refuses a body whose effector is unknown

    @property
    def goal_dim(self) -> int:
        """``G``: entries of the goal a ``"body_goal"`` head predicts (its goal fields, or the
        effector's coordinates); ``0`` for the other targets."""
        idx = goal_index(self.target, self.proprio_fields, self.goal_fields)
        if idx and self.goal_space == "effector":
            body = np.zeros((1, len(self.proprio_fields)))
            return int(effector_position(self.proprio_fields, body).shape[-1])
        return len(idx)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``config.json`` adds the model type)."""
        return dataclasses.asdict(self)


def goal_index(
    target: str, proprio_fields: Sequence[str], goal_fields: Sequence[str] = ()
) -> tuple[int, ...]:
    """Positions in the body vector of the fields a ``"body_goal"`` head's distance reads.

    Returns:
        Indices into ``proprio_fields`` (all of them for empty ``goal_fields``); ``()`` for the
        other targets.

    Raises:
        ValueError: ``"body_goal"`` without ``proprio_fields``; ``goal_fields`` for another
            target, repeated, or not among ``proprio_fields``.
    """
    if target != "body_goal":
        if goal_fields:
            raise ValueError(
                f"goal_fields only apply to target='body_goal', got {tuple(goal_fields)} with "
                f"target={target!r}"
            )
        return ()
    if not proprio_fields:
        raise ValueError(
            "target='body_goal' measures the distance of the body to a goal body, so the head "
            "must read the body: give proprio_fields (train-progress --proprio)"
        )
    unknown = [f for f in goal_fields if f not in proprio_fields]
    if unknown or len(set(goal_fields)) != len(goal_fields):
        raise ValueError(
            f"goal_fields must be distinct fields of the body ({', '.join(proprio_fields)}), got "
            f"{tuple(goal_fields)}"
        )
    fields = list(proprio_fields)
    return tuple(fields.index(f) for f in goal_fields or proprio_fields)


class ProgressHead(nn.Module):
    """Patch features ``(B, N, D)`` (+ body ``(B, P)``) -> ``(progress (B,) in [0, 1], success
    logit (B,))``.

    A ``"body_goal"`` head has one more branch, ``goal``: the flattened token projection -> the
    standardised goal body ``(B, G)`` (``G`` = len of the goal fields). It reads the features
    only: the goal is where the scene says the body should end up, wherever the body is now.

    Args:
        config: sizes, the encoder fingerprint and the body fields (if any).
    """

    MODEL_TYPE: ClassVar[str] = "progress-head"
    """``config.json`` type of its checkpoints."""

    def __init__(self, config: ProgressHeadConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.norm = nn.LayerNorm(c.feature_dim)
        self.token = nn.Linear(c.feature_dim, c.token_dim)
        body_dim = 0
        if c.proprio_fields:
            p, body_dim = len(c.proprio_fields), c.token_dim
            self.body = nn.Linear(p, body_dim)
            # Fitted on the training rows (fit_body_stats) and saved with the weights, so a
            # bundle's head standardises the body as it was trained to.
            self.register_buffer("proprio_mean", torch.zeros(p))
            self.register_buffer("proprio_std", torch.ones(p))
        # Position matters (where the object is), so tokens keep their identity in the concat.
        self.mlp = nn.Sequential(
            nn.Linear(c.num_tokens * c.token_dim + body_dim, c.hidden),
            nn.GELU(),
            nn.Linear(c.hidden, c.hidden),
            nn.GELU(),
            nn.Linear(c.hidden, 2),
        )
        # Index buffer (not saved): the goal fields' positions in the body vector.
        idx = goal_index(c.target, c.proprio_fields, c.goal_fields)
        self.register_buffer("goal_idx", torch.tensor(idx, dtype=torch.long), persistent=False)
        if idx:
            if c.goal_space == "effector":
                self.register_buffer("effector_mean", torch.zeros(c.goal_dim))
                self.register_buffer("effector_std", torch.ones(c.goal_dim))
            self.goal = nn.Sequential(
                nn.Linear(c.num_tokens * c.token_dim, c.hidden),
                nn.GELU(),
                nn.Linear(c.hidden, c.hidden),
                nn.GELU(),
                nn.Linear(c.hidden, c.goal_dim),
            )

    def forward(
        self, s: torch.Tensor, proprio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``s (B, N, D)``, ``proprio (B, P)`` (body heads only) -> ``(progress (B,),
        success_logit (B,))``.

        Raises:
            ValueError: features of the wrong shape; a body head without ``proprio`` or with
                the wrong ``P`` / non-finite values; a features-only head given ``proprio``.
        """
        x, body, out = self._trunk(s, proprio)
        if body is None or not len(self.goal_idx):
            return torch.sigmoid(out[:, 0]), out[:, 1]
        # "body_goal": the MLP's first output is unused; its second is the success logit.
        gap = self.goal_of(body) - self.goal(x)
        return torch.exp(-gap.norm(dim=-1) / self.config.goal_scale), out[:, 1]

    def predict_goal(self, s: torch.Tensor) -> torch.Tensor:
        """``"body_goal"`` heads: features ``(B, N, D)`` -> standardised goal body ``(B, G)``
        (the goal fields only, in body-vector order)."""
        if not len(self.goal_idx):
            raise ValueError(
                f"this progress head has target={self.config.target!r}, not 'body_goal'; it "
                "predicts no goal body"
            )
        return self.goal(self._tokens(s))

    def _tokens(self, s: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` features -> the flattened token projection ``(B, N * token_dim)``."""
        c = self.config
        if s.ndim != 3 or tuple(s.shape[1:]) != (c.num_tokens, c.feature_dim):
            raise ValueError(
                f"progress head expects features (B, {c.num_tokens}, {c.feature_dim}), got "
                f"{tuple(s.shape)}"
            )
        return F.gelu(self.token(self.norm(s.float()))).flatten(1)

    def _trunk(
        self, s: torch.Tensor, proprio: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(tokens (B, N * token_dim), checked body (B, P) or None, MLP output (B, 2))``."""
        x = self._tokens(s)
        body = self._check_proprio(proprio, len(s))
        h = x if body is None else torch.cat([x, F.gelu(self.body(self.normalize_body(body)))], -1)
        return x, body, self.mlp(h)

    def _check_proprio(self, proprio: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The body ``(B, P)`` as float, or ``None`` for a features-only head; see
        :meth:`forward` for what it refuses."""
        fields = self.config.proprio_fields
        if not fields:
            if proprio is not None:
                raise ValueError(
                    "this progress head reads features only (no proprio_fields), but proprio "
                    f"of shape {tuple(proprio.shape)} was given; drop it or use a head trained "
                    "with train-progress --proprio"
                )
            return None
        if proprio is None:
            raise ValueError(
                f"this progress head also reads the body; pass proprio (B, {len(fields)}): "
                f"{', '.join(fields)} (rla_gym.data.proprio.body_vector)"
            )
        check_body(proprio.detach().cpu().numpy(), fields, "progress head proprio")
        if proprio.ndim != 2 or len(proprio) != batch:
            raise ValueError(
                f"progress head proprio must be ({batch}, {len(fields)}) like its features, got "
                f"{tuple(proprio.shape)}"
            )
        return proprio.float()

    def goal_of(self, proprio: torch.Tensor) -> torch.Tensor:
        """``"body_goal"`` heads: raw body vectors ``(B, P)`` -> where they are in the goal's
        space, standardised ``(B, G)``: the goal fields, or the effector's position."""
        if self.config.goal_space == "effector":
            eff = effector_position(self.config.proprio_fields, proprio.float())
            return (eff - self.effector_mean) / self.effector_std
        return self.normalize_body(proprio.float())[:, self.goal_idx]

    def raw_goal(self, goal: torch.Tensor) -> torch.Tensor:
        """``"body_goal"`` heads: standardised goal-space vectors ``(B, G)`` (a predicted goal or
        :meth:`goal_of`) -> unstandardised: the effector's place, or the goal fields' body values
        (``goal_field_names``, in order)."""
        if self.config.goal_space == "effector":
            return goal * self.effector_std + self.effector_mean
        idx = self.goal_idx
        return goal * self.proprio_std[idx] + self.proprio_mean[idx]

    @property
    def goal_field_names(self) -> tuple[str, ...]:
        """The body fields a body-space goal holds, in order (empty ``goal_fields``: all)."""
        return tuple(self.config.proprio_fields[i] for i in self.goal_idx.tolist())

    def normalize_body(self, proprio: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` body vector -> standardised with the training statistics."""
        return (proprio - self.proprio_mean) / self.proprio_std

    @torch.no_grad()
    def fit_body_stats(self, proprio: np.ndarray) -> None:
        """Fit the body's standardisation on the training rows ``(M, P)`` (body heads only)."""
        fields = self.config.proprio_fields
        if not fields:
            raise ValueError("this progress head reads features only; it has no body to fit")
        p = torch.from_numpy(check_body(proprio, fields)).reshape(-1, len(fields))
        self.proprio_mean.copy_(p.mean(0))
        # A constant body entry (e.g. fingers that never move) must not divide by ~0.
        self.proprio_std.copy_(p.std(0, unbiased=False).clamp_min(1e-3))
        if self.config.goal_space == "effector":
            eff = effector_position(fields, p)
            self.effector_mean.copy_(eff.mean(0))
            # One scale for every axis, so the distance stays a distance in space.
            self.effector_std.fill_(float(eff.var(0, unbiased=False).mean().sqrt().clamp_min(1e-3)))

    def loss(
        self,
        s: torch.Tensor,
        progress: torch.Tensor | None,
        success: torch.Tensor,
        progress_max: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        goal: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE on success + MSE on progress where it is known (``nan`` targets are skipped);
        ``"body_goal"`` heads: BCE on success + MSE of the standardised goal body where known.

        Args:
            s: ``(B, N, D)`` features.
            progress: ``(B,)`` targets in ``[0, 1]`` or ``nan`` (unused by ``"body_goal"``).
            success: ``(B,)`` 0/1 targets.
            progress_max: ``(B,)`` upper bounds of the unknown targets (default: 0.8, the
                ``"fraction"`` target's cap).
            proprio: ``(B, P)`` body vectors (body heads only).
            goal: ``(B, P)`` raw goal bodies, rows of ``nan`` where unknown (``"body_goal"``
                only; see :func:`goal_targets`).

        Raises:
            ValueError: a ``"body_goal"`` head without ``goal``, or another head without
                ``progress``.
        """
        if len(self.goal_idx):
            return self._goal_loss(s, success, proprio, goal)
        if progress is None:
            raise ValueError(f"a {self.config.target!r} progress head needs progress targets")
        p, logit = self(s, proprio)
        bce = F.binary_cross_entropy_with_logits(logit, success.float())
        known = torch.isfinite(progress)
        mse = F.mse_loss(p[known], progress[known]) if known.any() else p.sum() * 0.0
        # Frames of failed episodes have no progress target, but they are not done either: keep
        # their progress below what their episode's failure bounds it by.
        open_ = ~known & (success < 0.5)
        bound = FRACTION_CAP if progress_max is None else progress_max[open_]
        cap = F.relu(p[open_] - bound).pow(2).mean() if open_.any() else p.sum() * 0.0
        loss = bce + mse + cap
        return loss, {"progress/bce": float(bce.detach()), "progress/mse": float(mse.detach())}

    def _goal_loss(
        self,
        s: torch.Tensor,
        success: torch.Tensor,
        proprio: torch.Tensor | None,
        goal: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``"body_goal"``: success BCE + goal MSE over rows with a goal (see :meth:`loss`)."""
        if goal is None or goal.ndim != 2 or goal.shape[1] != len(self.config.proprio_fields):
            raise ValueError(
                "a 'body_goal' progress head trains on goal bodies (B, "
                f"{len(self.config.proprio_fields)}) (head_inputs(..., 'body_goal', bodies=)), "
                f"got {None if goal is None else tuple(goal.shape)}"
            )
        x, _, out = self._trunk(s, proprio)
        bce = F.binary_cross_entropy_with_logits(out[:, 1], success.float())
        target = self.goal_of(goal)
        known = torch.isfinite(target).all(-1)
        pred = self.goal(x[known])
        mse = F.mse_loss(pred, target[known]) if known.any() else out.sum() * 0.0
        terms = {"progress/bce": float(bce.detach()), "progress/goal_mse": float(mse.detach())}
        return bce + mse, terms

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ ``meta.json``) atomically."""
        return save_checkpoint(path, self.config.to_dict(), self, meta=meta)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        expected_fingerprint: str | None = None,
        device: str | torch.device = "cpu",
    ) -> ProgressHead:
        """Load a saved head.

        Raises:
            EncoderMismatchError: ``expected_fingerprint`` differs from the head's encoder.
            ModelTypeError: the folder holds another model type.
        """
        ckpt = load_checkpoint(path, map_location=device)
        config = ProgressHeadConfig(**model_config(ckpt.config, cls.MODEL_TYPE, ckpt.path))
        if expected_fingerprint is not None and config.encoder_fingerprint != expected_fingerprint:
            raise EncoderMismatchError(
                f"progress head {path} was trained on features of {config.encoder_fingerprint}, "
                f"but these features come from {expected_fingerprint}; train a head on this "
                "encoder's features (rla-gym train-progress)"
            )
        head = cls(config)
        head.load_state_dict(ckpt.state_dict)
        return head.to(device).eval()


def progress_targets(
    success: np.ndarray, target: ProgressTarget = "fraction", decay_steps: float = DECAY_STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """Progress targets of one episode from its per-frame success flags ``bool (T+1,)``.

    ``"fraction"``: successful episodes ``min(t / t_success, 1)`` (``t_success``: first solved
    frame); failed episodes ``nan`` (unknown), except frame 0, whose progress is 0 by definition
    (which also teaches the head that start frames are not progress), bounded by 0.8.
    ``"steps"``: successful episodes ``exp(-max(t_success - t, 0) / decay_steps)``; failed
    episodes ``nan``, bounded by ``exp(-(T + 1 - t) / decay_steps)``.

    Returns:
        ``(targets, bounds)``, both ``float32 (T+1,)``: the target (``nan``: unknown) and the
        upper bound of the unknown ones (``nan`` where the target is known).
    """
    success = np.asarray(success, bool)
    t = np.arange(len(success))
    out = np.full(len(success), np.nan, np.float32)
    hits = np.flatnonzero(success)
    if target == "fraction":
        if len(hits):
            out[:] = np.minimum(t / max(int(hits[0]), 1), 1.0)
        out[0] = 0.0
        bound = np.where(np.isfinite(out), np.nan, FRACTION_CAP).astype(np.float32)
        return out, bound
    if target != "steps":
        hint = " (its targets are goal bodies: goal_targets)" if target == "body_goal" else ""
        raise ValueError(f"target must be 'fraction' or 'steps'{hint}, got {target!r}")
    if len(hits):
        out[:] = np.exp(-np.maximum(int(hits[0]) - t, 0) / decay_steps)
        return out, np.full(len(success), np.nan, np.float32)
    return out, np.exp(-(len(success) - t) / decay_steps).astype(np.float32)


def goal_targets(
    success: np.ndarray, body: np.ndarray, frame: GoalFrame = "last_success"
) -> np.ndarray:
    """Goal-body labels of one episode (``"body_goal"``).

    Args:
        success: ``bool (T+1,)`` per-frame success flags.
        body: ``(T+1, P)`` the episode's body vectors.
        frame: the solved frame whose body is the label: the first (where the task became
            done, often at the edge of the tolerance: reacher's finger is then a median 0.056
            from the target's centre) or the last (where the policy settled: 0.014).

    Returns:
        ``float32 (T+1, P)``: every frame of a successful episode holds the body at that solved
        frame; a failed episode's rows are ``nan`` (where it should have ended is unknown).

    Raises:
        ValueError: an unknown ``frame``.
    """
    if frame not in ("first_success", "last_success"):
        raise ValueError(f"goal frame must be 'first_success' or 'last_success', got {frame!r}")
    success, body = np.asarray(success, bool), np.asarray(body, np.float32)
    out = np.full(body.shape, np.nan, np.float32)
    hits = np.flatnonzero(success)
    if len(hits):
        out[:] = body[hits[0] if frame == "first_success" else hits[-1]]
    return out


def head_inputs(
    episodes: Sequence[tuple[np.ndarray, np.ndarray]],
    target: ProgressTarget = "fraction",
    decay_steps: float = DECAY_STEPS,
    bodies: Sequence[np.ndarray] | None = None,
    goal_frame: GoalFrame = "last_success",
) -> dict[str, np.ndarray]:
    """Stack episodes into training rows.

    Args:
        episodes: ``(features (T+1, N, D), success bool (T+1,))`` per episode.
        target, decay_steps: what progress means (see :func:`progress_targets`).
        bodies: ``(T+1, P)`` body vectors per episode (rows then carry ``"proprio"``; needed by
            ``"body_goal"``).
        goal_frame: ``"body_goal"``: which solved frame labels the goal (see
            :func:`goal_targets`).

    Returns:
        ``{"s": (M, N, D) float16, "progress": (M,) float32 (nan = unknown), "progress_max":
        (M,) float32 (bound of the unknown ones), "success": (M,) float32}`` and, with
        ``bodies``, ``"proprio": (M, P) float32``. ``"body_goal"`` rows carry ``"goal": (M, P)
        float32`` (:func:`goal_targets`) instead of ``"progress"`` and ``"progress_max"``.

    Raises:
        ValueError: no episodes, bodies that do not match the episodes frame for frame, or
            ``"body_goal"`` without bodies.
    """
    if not episodes:
        raise ValueError("need at least one episode to train a progress head")
    s = np.concatenate([f for f, _ in episodes]).astype(np.float16)
    succ = np.concatenate([np.asarray(ok, np.float32) for _, ok in episodes])
    rows = {"s": s, "success": succ}
    if target == "body_goal":
        if bodies is None:
            raise ValueError("target='body_goal' labels frames with goal bodies: pass bodies")
    else:
        targets = [progress_targets(ok, target, decay_steps) for _, ok in episodes]
        rows["progress"] = np.concatenate([p for p, _ in targets])
        rows["progress_max"] = np.concatenate([b for _, b in targets])
    if bodies is not None:
        frames = [len(f) for f, _ in episodes]
        if [len(b) for b in bodies] != frames:
            raise ValueError(
                f"bodies must have one row per frame of each episode ({frames}), got "
                f"{[len(b) for b in bodies]}"
            )
        rows["proprio"] = np.concatenate(bodies).astype(np.float32)
        if target == "body_goal":
            pairs = zip(episodes, bodies, strict=True)
            goals = [goal_targets(ok, b, goal_frame) for (_, ok), b in pairs]
            rows["goal"] = np.concatenate(goals)
    return rows
