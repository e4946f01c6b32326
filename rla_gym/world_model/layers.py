"""Transformer building blocks shared by RLA-WM and the learned baselines.

adaLN-Zero blocks (condition stage), flow blocks with cached cross-attention (flow stage), a
sinusoidal time embedding and small helpers. Parameter names are part of the checkpoint format:
renaming a submodule breaks loading of saved world models.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AdaLNBlock",
    "Attention",
    "ConditionStage",
    "FlowBlock",
    "FlowCache",
    "FlowStage",
    "TimeEmbedding",
    "mlp",
    "modulate",
    "repeat_kv",
    "zero_linear",
]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x (B, L, W) * (1 + scale (B, W)) + shift (B, W)``."""
    return x * (1.0 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention with separately callable key/value projection (for caching).

    Args:
        width: model width ``W``.
        heads: number of heads.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        return x.view(b, n, self.heads, w // self.heads).transpose(1, 2)

    def keys_values(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project context tokens ``(B, L, W)`` to keys and values ``(B, heads, L, W/heads)``."""
        k, v = self.kv(ctx).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Attend from ``x (B, L, W)`` to ``kv`` (self-attention if ``None``) -> ``(B, L, W)``."""
        k, v = self.keys_values(x) if kv is None else kv
        o = F.scaled_dot_product_attention(self._split(self.q(x)), k, v)
        return self.out(o.transpose(1, 2).reshape(x.shape))


def mlp(width: int, ratio: float) -> nn.Sequential:
    hidden = int(width * ratio)
    return nn.Sequential(
        nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width)
    )


def zero_linear(i: int, o: int) -> nn.Linear:
    lin = nn.Linear(i, o)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class AdaLNBlock(nn.Module):
    """Pre-LN transformer block whose LayerNorms are modulated by a vector ``c``.

    The modulation layer is zero-initialised, so gates start at 0 and the block starts as the
    identity: a freshly built condition stage passes the state tokens through unchanged, which
    makes early training stable.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(width, mlp_ratio)
        self.mod = nn.Sequential(nn.SiLU(), zero_linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x (B, L, W)``, ``c (B, W)`` -> ``(B, L, W)``."""
        sh1, sc1, g1, sh2, sc2, g2 = self.mod(c).chunk(6, dim=-1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1))
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))


class FlowBlock(nn.Module):
    """adaLN(time) self-attention, un-modulated cross-attention to condition tokens, adaLN MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(width, heads)
        self.norm_cross = nn.LayerNorm(width, eps=1e-6)
        self.cross_attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(width, mlp_ratio)
        self.mod = nn.Sequential(nn.SiLU(), zero_linear(width, 6 * width))

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, cross_kv: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """``x (B, L, W)``, time vector ``c (B, W)``, cached condition K/V -> ``(B, L, W)``."""
        sh1, sc1, g1, sh2, sc2, g2 = self.mod(c).chunk(6, dim=-1)
        x = x + g1[:, None] * self.self_attn(modulate(self.norm1(x), sh1, sc1))
        x = x + self.cross_attn(self.norm_cross(x), kv=cross_kv)
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of ``1000 t`` followed by an MLP: ``(B,)`` -> ``(B, W)``."""

    def __init__(self, width: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
        )
        # Scaling t in [0, 1] by 1000 spreads it over the frequency range (DiT convention).
        args = 1000.0 * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class ConditionStage(nn.Module):
    """State tokens + action vector -> condition tokens (run once per prediction).

    Args:
        in_dim: ``D``, channels of a state token.
        num_tokens: ``N``.
        width: ``W``.
        heads: attention heads.
        depth: number of :class:`AdaLNBlock` s.
        mlp_ratio: MLP expansion.
    """

    def __init__(
        self, in_dim: int, num_tokens: int, width: int, heads: int, depth: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.in_proj = nn.Linear(in_dim, width)
        self.pos = nn.Parameter(torch.randn(1, num_tokens, width) * 0.02)
        self.blocks = nn.ModuleList(AdaLNBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(
        self, s_t: torch.Tensor, a: torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``s_t (B, N, D)``, action vector ``a (B, W)`` -> condition tokens ``(B, N, W)``;
        ``extra (B, N, W)`` (e.g. the embedded motion of a history model) is added per token."""
        x = self.in_proj(s_t) + self.pos
        if extra is not None:
            x = x + extra
        for blk in self.blocks:
            x = blk(x, a)
        return self.norm(x)


class FlowCache(NamedTuple):
    """What the flow stage needs at every solver step, computed once per prediction."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    """Cross-attention keys/values of every block, ``(B, heads, N, W/heads)`` each."""
    vector: torch.Tensor | None = None
    """``(B, W)`` condition vector added to the time embedding (``None``: time only)."""


class FlowStage(nn.Module):
    """Velocity network over ``L`` noisy tokens of size ``dim``, cross-attending to conditions.

    Args:
        dim: channels of a noisy token (``d`` for RLA latents, ``D`` for feature-space flow).
        num_tokens: ``L``; each index gets its own learned embedding.
        width: ``W``.
        heads: attention heads.
        depth: number of :class:`FlowBlock` s.
        mlp_ratio: MLP expansion.
        vector: also take a ``(B, W)`` condition vector (see :meth:`prepare`), projected and
            added to the time embedding that modulates every block (as DiT adds its class
            embedding), so it reaches every block directly instead of only through the
            cross-attended condition tokens.
    """

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        width: int,
        heads: int,
        depth: int,
        mlp_ratio: float,
        vector: bool = False,
    ) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, width)
        self.index_emb = nn.Parameter(torch.randn(1, num_tokens, width) * 0.02)
        self.time = TimeEmbedding(width)
        if vector:  # only models built with it have it, so older checkpoints load as they are
            self.vector_proj = nn.Linear(width, width)
        self.blocks = nn.ModuleList(FlowBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mod_out = nn.Sequential(nn.SiLU(), zero_linear(width, 2 * width))
        # Zero-init head: the initial velocity is 0, so the first samples are pure noise rather
        # than large random vectors, and the loss starts at E|x_1 - x_0|.
        self.out = zero_linear(width, dim)

    def prepare(self, cond: torch.Tensor, vector: torch.Tensor | None = None) -> FlowCache:
        """Cross-attention keys/values of every block for condition tokens ``(B, N, W)``, and
        the projected condition vector ``(B, W)`` of a stage built with ``vector=True``.

        Computed once per prediction so each solver step only pays for the ``L`` query tokens.
        """
        kv = [blk.cross_attn.keys_values(cond) for blk in self.blocks]
        proj = getattr(self, "vector_proj", None)
        if (proj is None) != (vector is None):
            raise ValueError("a condition vector is needed exactly when the stage has vector=True")
        return FlowCache(kv, None if proj is None else proj(vector))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cache: FlowCache) -> torch.Tensor:
        """``x (B, L, dim)``, ``t (B,)``, cache from :meth:`prepare` -> velocity ``(B, L, dim)``."""
        c = self.time(t)
        if cache.vector is not None:
            c = c + cache.vector
        h = self.in_proj(x) + self.index_emb
        for blk, kv in zip(self.blocks, cache.kv, strict=True):
            h = blk(h, c, kv)
        shift, scale = self.mod_out(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm_out(h), shift, scale))


def repeat_kv(cache: FlowCache, n: int) -> FlowCache:
    """Repeat every cached ``(B, ...)`` key/value (and the vector) ``n`` times along the batch
    (sample-major)."""
    if n == 1:
        return cache
    vec = None if cache.vector is None else cache.vector.repeat_interleave(n, 0)
    return FlowCache(
        [(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in cache.kv], vec
    )
