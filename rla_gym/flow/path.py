"""The conditional optimal-transport (rectified) path between noise and data.

``x_t = (1 - t) x_0 + t x_1`` with ``x_0 ~ N(0, I)`` (noise, ``t = 0``) and ``x_1`` data
(``t = 1``). Its velocity ``d x_t / dt = x_1 - x_0`` does not depend on ``t``, which is why straight
paths integrate well with few Euler steps.

Every random draw takes an explicit :class:`torch.Generator` so that environments and training runs
are reproducible without touching the global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["interpolate", "noise_like", "sample_time", "velocity_target"]

TimeDistribution = Literal["logit_normal", "uniform"]


def noise_like(
    shape: Sequence[int] | torch.Size,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard Gaussian noise ``x_0`` of ``shape``.

    The draw happens on the generator's device and is then moved to ``device``, so a CPU
    generator gives identical noise whatever device the model runs on.

    Args:
        shape: output shape, e.g. ``(B, K, d)``.
        generator: source of randomness.
        device: where the result should live (default: the generator's device).
        dtype: floating dtype of the result.

    Returns:
        Tensor of ``shape``.
    """
    x = torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=dtype)
    return x if device is None else x.to(device)


def noise_for_rows(
    rows: int,
    num_samples: int,
    shape: Sequence[int] | torch.Size,
    generator: torch.Generator | Sequence[torch.Generator],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Noise for ``num_samples`` draws of each of ``rows`` rows, sample-major within a row.

    With one generator the whole ``(rows * S, *shape)`` block is drawn from it. With one
    generator per row, row ``i``'s ``S`` draws come from ``generator[i]`` alone, so a row's noise
    never depends on which other rows share the batch (what makes a batched env equal to single
    envs). With one generator per draw (``B * S``, sample-major), draw ``j`` of row ``i`` comes
    from ``generator[i * S + j]``, drawn in that order (a generator may appear several times):
    a dreamed env draws sample 0 from its own stream and the extra samples from a second one, so
    that asking for more samples never changes sample 0.

    Args:
        rows: batch size ``B``.
        num_samples: draws per row ``S``.
        shape: shape of one draw, e.g. ``(K, d)``.
        generator: one generator, a sequence of ``B`` generators, or one of ``B * S``.
        device: where the result should live.

    Returns:
        ``(B * S, *shape)``; rows ``i * S .. i * S + S - 1`` belong to row ``i``.

    Raises:
        ValueError: a generator sequence whose length is neither ``rows`` nor ``rows * S``.
    """
    if isinstance(generator, torch.Generator):
        return noise_like((rows * num_samples, *shape), generator, device)
    gens = list(generator)
    if len(gens) == rows * num_samples:
        x = torch.stack([noise_like((1, *shape), g)[0] for g in gens])
        return x if device is None else x.to(device)
    if len(gens) != rows:
        raise ValueError(
            f"got {len(gens)} generators for {rows} rows of {num_samples} draws; pass one, one "
            f"per row ({rows}) or one per draw ({rows * num_samples})"
        )
    x = torch.stack([noise_like((num_samples, *shape), g) for g in gens])
    x = x.view(rows * num_samples, *shape)
    return x if device is None else x.to(device)


def sample_time(
    batch: int,
    generator: torch.Generator,
    kind: TimeDistribution = "logit_normal",
    mean: float = 0.0,
    std: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Flow times ``t`` for a batch.

    ``"logit_normal"`` draws ``sigmoid(N(mean, std^2))`` (the paper's choice: it concentrates
    training on intermediate ``t`` where the velocity is hardest to predict); ``"uniform"`` draws
    ``U(0, 1)``.

    Args:
        batch: number of times ``B``.
        generator: source of randomness.
        kind: distribution name.
        mean: mean of the normal before the sigmoid (logit-normal only).
        std: standard deviation of the normal before the sigmoid (logit-normal only).
        device: where the result should live (default: the generator's device).

    Returns:
        ``float32 (B,)`` in the open interval ``(0, 1)`` (logit-normal) or ``[0, 1)`` (uniform).
    """
    gdev = generator.device
    if kind == "logit_normal":
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        t = torch.sigmoid(mean + std * torch.randn(batch, generator=generator, device=gdev))
    elif kind == "uniform":
        t = torch.rand(batch, generator=generator, device=gdev)
    else:
        raise ValueError(f"unknown time distribution {kind!r}; use 'logit_normal' or 'uniform'")
    return t if device is None else t.to(device)


def _expand_time(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Broadcast ``t`` of shape ``()`` or ``(B,)`` against ``like`` of shape ``(B, ...)``."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 1:
        if t.shape[0] != like.shape[0]:
            raise ValueError(f"t has {t.shape[0]} entries but the batch has {like.shape[0]}")
        t = t.reshape(-1, *([1] * (like.ndim - 1)))
    elif t.ndim != 0:
        raise ValueError(f"t must be a scalar or shape (B,), got {tuple(t.shape)}")
    return t


def interpolate(x_0: torch.Tensor, x_1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Point on the path: ``x_t = (1 - t) x_0 + t x_1``.

    Args:
        x_0: noise ``(B, ...)``.
        x_1: data ``(B, ...)``, same shape as ``x_0``.
        t: time, scalar or ``(B,)``.

    Returns:
        ``x_t`` with the shape of ``x_0``.
    """
    if x_0.shape != x_1.shape:
        raise ValueError(f"x_0 {tuple(x_0.shape)} and x_1 {tuple(x_1.shape)} differ in shape")
    t = _expand_time(t, x_0)
    return (1.0 - t) * x_0 + t * x_1


def velocity_target(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    """Conditional velocity of the path, ``dx_t/dt = x_1 - x_0`` (independent of ``t``).

    Args:
        x_0: noise ``(B, ...)``.
        x_1: data ``(B, ...)``.

    Returns:
        Tensor with the shape of ``x_0``.
    """
    if x_0.shape != x_1.shape:
        raise ValueError(f"x_0 {tuple(x_0.shape)} and x_1 {tuple(x_1.shape)} differ in shape")
    return x_1 - x_0
