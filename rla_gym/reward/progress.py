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

from rla_gym.data.proprio import check_body
from rla_gym.errors import EncoderMismatchError
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint

__all__ = [
    "ProgressHead",
    "ProgressHeadConfig",
    "ProgressTarget",
    "head_inputs",
    "progress_targets",
]

ProgressTarget = Literal["fraction", "steps"]

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
    """What progress means: ``"fraction"`` of the episode until success, or ``"steps"``: decayed
    control steps until success (see the module docstring)."""
    decay_steps: float = DECAY_STEPS
    """``"steps"``: progress ``exp(-steps / decay_steps)``."""
    proprio_fields: tuple[str, ...] = ()
    """The body vector the head also reads (:mod:`rla_gym.data.proprio`; e.g. reacher's six
    ``shoulder_sin ... wrist_vel``). Non-empty: the standardised body is embedded as one more
    ``token_dim`` vector beside the tokens. Empty: features only (every head before 2026-12)."""

    def __post_init__(self) -> None:
        # JSON gives a list; the frozen config keeps a hashable tuple.
        object.__setattr__(self, "proprio_fields", tuple(str(f) for f in self.proprio_fields))
        if min(self.feature_dim, self.num_tokens, self.token_dim, self.hidden) < 1:
            raise ValueError(f"all sizes must be >= 1, got {self}")
        if self.target not in ("fraction", "steps"):
            raise ValueError(f"target must be 'fraction' or 'steps', got {self.target!r}")
        if not self.decay_steps > 0:
            raise ValueError(f"decay_steps must be > 0, got {self.decay_steps}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``config.json`` adds the model type)."""
        return dataclasses.asdict(self)


class ProgressHead(nn.Module):
    """Patch features ``(B, N, D)`` (+ body ``(B, P)``) -> ``(progress (B,) in [0, 1], success
    logit (B,))``.

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

    def forward(
        self, s: torch.Tensor, proprio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``s (B, N, D)``, ``proprio (B, P)`` (body heads only) -> ``(progress (B,),
        success_logit (B,))``.

        Raises:
            ValueError: features of the wrong shape; a body head without ``proprio`` or with
                the wrong ``P`` / non-finite values; a features-only head given ``proprio``.
        """
        c = self.config
        if s.ndim != 3 or tuple(s.shape[1:]) != (c.num_tokens, c.feature_dim):
            raise ValueError(
                f"progress head expects features (B, {c.num_tokens}, {c.feature_dim}), got "
                f"{tuple(s.shape)}"
            )
        x = F.gelu(self.token(self.norm(s.float()))).flatten(1)
        body = self._check_proprio(proprio, len(s))
        if body is not None:
            x = torch.cat([x, F.gelu(self.body(self.normalize_body(body)))], -1)
        out = self.mlp(x)
        return torch.sigmoid(out[:, 0]), out[:, 1]

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

    def loss(
        self,
        s: torch.Tensor,
        progress: torch.Tensor,
        success: torch.Tensor,
        progress_max: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE on success + MSE on progress where it is known (``nan`` targets are skipped).

        Args:
            s: ``(B, N, D)`` features.
            progress: ``(B,)`` targets in ``[0, 1]`` or ``nan``.
            success: ``(B,)`` 0/1 targets.
            progress_max: ``(B,)`` upper bounds of the unknown targets (default: 0.8, the
                ``"fraction"`` target's cap).
            proprio: ``(B, P)`` body vectors (body heads only).
        """
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
        raise ValueError(f"target must be 'fraction' or 'steps', got {target!r}")
    if len(hits):
        out[:] = np.exp(-np.maximum(int(hits[0]) - t, 0) / decay_steps)
        return out, np.full(len(success), np.nan, np.float32)
    return out, np.exp(-(len(success) - t) / decay_steps).astype(np.float32)


def head_inputs(
    episodes: Sequence[tuple[np.ndarray, np.ndarray]],
    target: ProgressTarget = "fraction",
    decay_steps: float = DECAY_STEPS,
    bodies: Sequence[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Stack episodes into training rows.

    Args:
        episodes: ``(features (T+1, N, D), success bool (T+1,))`` per episode.
        target, decay_steps: what progress means (see :func:`progress_targets`).
        bodies: ``(T+1, P)`` body vectors per episode (rows then carry ``"proprio"``).

    Returns:
        ``{"s": (M, N, D) float16, "progress": (M,) float32 (nan = unknown), "progress_max":
        (M,) float32 (bound of the unknown ones), "success": (M,) float32}`` and, with
        ``bodies``, ``"proprio": (M, P) float32``.

    Raises:
        ValueError: no episodes, or bodies that do not match the episodes frame for frame.
    """
    if not episodes:
        raise ValueError("need at least one episode to train a progress head")
    s = np.concatenate([f for f, _ in episodes]).astype(np.float16)
    targets = [progress_targets(ok, target, decay_steps) for _, ok in episodes]
    succ = np.concatenate([np.asarray(ok, np.float32) for _, ok in episodes])
    rows = {"s": s, "progress": np.concatenate([p for p, _ in targets]),
            "progress_max": np.concatenate([b for _, b in targets]), "success": succ}  # fmt: skip
    if bodies is not None:
        frames = [len(f) for f, _ in episodes]
        if [len(b) for b in bodies] != frames:
            raise ValueError(
                f"bodies must have one row per frame of each episode ({frames}), got "
                f"{[len(b) for b in bodies]}"
            )
        rows["proprio"] = np.concatenate(bodies).astype(np.float32)
    return rows
