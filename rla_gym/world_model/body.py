"""The body's own dynamics: the next body vector from the current one and the action chunk.

A body world model (``train-wm --proprio``) reads the next body off its condition stage: the pooled
patch tokens, its action embedding and the body. On reacher that head leaves the fingertip 3.8 cm
from the real one after one chunk and 12 cm after four (the dream-trained policy's own actions,
real starts, seeds 20000+), while a touch counts within ~6 cm: a policy trained on that body
learns a controller for a body that does not exist. The body is what the action moves, and its
dynamics hardly depend on the scene (next reacher body from body + action: R^2 0.99; from the
features: 0.08), so :class:`BodyDynamics` is a small MLP of exactly that, trained on every recorded
episode's proprio and actions (seconds on a CPU). A bundle that ships one (``body/``,
``rla-gym add-body-model``) dreams its body with it: ``RLAWorldConfig.body_dynamics``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rla_gym.data.proprio import check_body
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint

__all__ = ["BodyDynamics", "BodyDynamicsConfig", "body_windows"]


@dataclass(frozen=True, kw_only=True)
class BodyDynamicsConfig:
    """Sizes of :class:`BodyDynamics` and the body and actions it reads."""

    proprio_fields: tuple[str, ...]
    """``P`` names of the body vector (:mod:`rla_gym.data.proprio`)."""
    chunk: int
    """``K``: control steps per predicted change (the bundle's chunk)."""
    action_dim: int
    """``A``: action size, in simulator units."""
    hidden: int = 256
    """Width of the two hidden layers."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "proprio_fields", tuple(str(f) for f in self.proprio_fields))
        if not self.proprio_fields:
            raise ValueError("a body model needs the body's fields (proprio_fields)")
        if min(self.chunk, self.action_dim, self.hidden) < 1:
            raise ValueError(f"chunk, action_dim and hidden must be >= 1, got {self}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``config.json`` adds the model type)."""
        return dataclasses.asdict(self)


class BodyDynamics(nn.Module):
    """``body (B, P)``, ``actions (B, K, A)`` (simulator units) -> the body after the chunk
    ``(B, P)``: the current body plus a predicted change, both inputs and the change standardised
    with the training rows' statistics (saved with the weights)."""

    MODEL_TYPE: ClassVar[str] = "body-dynamics"

    def __init__(self, config: BodyDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        p, width = len(config.proprio_fields), config.hidden
        n_in = p + config.chunk * config.action_dim
        self.net = nn.Sequential(
            nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
            nn.Linear(width, p),
        )  # fmt: skip
        for name, size in (("in_mean", n_in), ("in_std", n_in), ("out_mean", p), ("out_std", p)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def fit_stats(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Standardisation from training inputs ``(M, P + K*A)`` and changes ``(M, P)``."""
        with torch.no_grad():
            # A constant entry (e.g. fingers that never move) must not divide by ~0.
            self.in_mean.copy_(x.mean(0))
            self.in_std.copy_(x.std(0, unbiased=False).clamp_min(1e-4))
            self.out_mean.copy_(y.mean(0))
            self.out_std.copy_(y.std(0, unbiased=False).clamp_min(1e-6))

    def change(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``(B, P + K*A)`` -> the standardised body change ``(B, P)`` (the loss's space)."""
        return self.net((x - self.in_mean) / self.in_std)

    def forward(self, body: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``body (B, P)``, ``actions (B, K, A)`` -> next body ``(B, P)``.

        Raises:
            ValueError: a body or a chunk of another size (the message names the fields).
        """
        c = self.config
        p = len(c.proprio_fields)
        if body.ndim != 2 or body.shape[1] != p:
            raise ValueError(
                f"body must be (B, {p}) ({', '.join(c.proprio_fields)}), got {tuple(body.shape)}"
            )
        if tuple(actions.shape) != (body.shape[0], c.chunk, c.action_dim):
            raise ValueError(
                f"actions must be (B, {c.chunk}, {c.action_dim}) for a body of {body.shape[0]} "
                f"rows, got {tuple(actions.shape)}"
            )
        x = torch.cat([body.float(), actions.float().flatten(1)], -1)
        return body.float() + self.change(x) * self.out_std + self.out_mean

    def save_pretrained(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ ``meta.json``) atomically."""
        return save_checkpoint(path, self.config.to_dict(), self, meta=meta)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> BodyDynamics:
        """Load a saved body model.

        Raises:
            ModelTypeError: the folder holds another model type.
        """
        ckpt = load_checkpoint(path, map_location=device)
        model = cls(BodyDynamicsConfig(**model_config(ckpt.config, cls.MODEL_TYPE, ckpt.path)))
        model.load_state_dict(ckpt.state_dict)
        return model.to(device).eval()


def body_windows(
    bodies: list[np.ndarray], actions: list[np.ndarray], chunk: int, fields: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every chunk-long window of recorded episodes, at every start step.

    Args:
        bodies: per episode, body vectors ``(T+1, P)``.
        actions: per episode, actions ``(T, A)`` in simulator units.
        chunk: ``K``.
        fields: the body's field names (checked).

    Returns:
        Inputs ``(M, P + K*A)`` (body at ``t``, actions ``t .. t+K-1``) and the body's change
        ``(M, P)`` from ``t`` to ``t + K``.
    """
    xs, ys = [], []
    for body, act in zip(bodies, actions, strict=True):
        body = check_body(body, fields)
        for t in range(len(act) - chunk + 1):
            xs.append(np.concatenate([body[t], act[t : t + chunk].ravel()]))
            ys.append(body[t + chunk] - body[t])
    if not xs:
        raise ValueError(f"no episode is {chunk} control steps long; nothing to learn from")
    x, y = np.asarray(xs, np.float32), np.asarray(ys, np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)
