"""Prediction fidelity of world models on held-out feature episodes (paper §6.1, in feature space).

Protocol: from real start frames of held-out episodes, roll each model out autoregressively with the
*recorded* actions in chunks of ``chunk`` control steps (predictions are fed back, never re-encoded)
and compare the predicted features with the recorded ones at horizons 8, 16 and 32 steps:

* feature L1: ``mean |ŝ - s|`` over tokens and channels (the paper's "DINO L1");
* cosine: cosine similarity per token, averaged over tokens.

Chunk boundaries are placed at every multiple of ``chunk`` *and* at every horizon, so a horizon is
always hit exactly even when ``chunk`` does not divide it. Start frames and flow noise come from
``seed``, so the numbers are deterministic for a given model and data. Optionally the single-step
reconstruction error of an RLA autoencoder (``decode(s_t, encode(s_t, s_{t+chunk}))``) is reported:
it bounds how well RLA-WM can do at one chunk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from rla_gym.world_model.baselines import Predictor

__all__ = ["DEFAULT_HORIZONS", "FidelityEpisodeLike", "evaluate_fidelity", "rollout_boundaries"]

DEFAULT_HORIZONS: tuple[int, ...] = (8, 16, 32)


class FidelityEpisodeLike(Protocol):
    """Anything with ``features (T+1, N, D)`` and ``actions (T, A)`` (e.g. ``FeatureEpisode``)."""

    features: np.ndarray
    actions: np.ndarray


def _arrays(ep: Any) -> tuple[np.ndarray, np.ndarray]:
    feats, acts = ep if isinstance(ep, tuple) else (ep.features, ep.actions)
    feats, acts = np.asarray(feats), np.asarray(acts)
    if feats.ndim != 3 or acts.ndim != 2 or len(feats) != len(acts) + 1:
        raise ValueError(
            f"episodes need features (T+1, N, D) and actions (T, A), got {feats.shape} and "
            f"{acts.shape}"
        )
    return feats, acts


def rollout_boundaries(horizon: int, chunk: int, horizons: Sequence[int]) -> list[int]:
    """Cumulative step counts after each chunk: multiples of ``chunk`` and every horizon <= horizon.

    Example: ``rollout_boundaries(32, 12, (8, 16, 32)) == [8, 12, 16, 24, 32]``.
    """
    marks = set(range(chunk, horizon + 1, chunk)) | {h for h in horizons if h <= horizon}
    return sorted(marks)


@torch.no_grad()
def evaluate_fidelity(
    predictor: Predictor,
    episodes: Sequence[FidelityEpisodeLike | tuple[np.ndarray, np.ndarray]],
    *,
    chunk: int = 8,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    starts_per_episode: int = 4,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    rla: Any | None = None,
) -> dict[str, Any]:
    """Autoregressive rollout fidelity at several horizons.

    Args:
        predictor: any model with the world-model API (``rollout``).
        episodes: held-out episodes (``FeatureEpisode`` or ``(features, actions)`` tuples).
        chunk: control steps per predicted chunk (must not exceed the model's ``H_max``).
        horizons: horizons in control steps.
        starts_per_episode: start frames drawn per episode (without replacement).
        seed: seeds the start frames and the flow noise.
        steps: solver steps for flow models (``None``: the model's default).
        batch_size: rollouts per batch.
        device: where inputs are placed (the predictor must live there too).
        rla: optional ``RLAAutoencoder``; adds the single-step reconstruction error at gap
            ``chunk``.

    Returns:
        ``{"chunk", "horizons", "seed", "steps", "starts", "l1": {str(h): float | None},
        "cosine": {str(h): float | None}, "count": {str(h): int}, "rla_recon_l1",
        "rla_recon_cosine", "rla_recon_count"}``; a horizon no episode is long enough for has
        ``None`` metrics and count 0; the ``rla_recon_*`` entries are ``None`` without ``rla``.

    Raises:
        ValueError: bad ``chunk`` / ``horizons`` or malformed episodes.
    """
    horizons = sorted({int(h) for h in horizons})
    if chunk < 1 or not horizons or horizons[0] < 1:
        raise ValueError(f"need chunk >= 1 and positive horizons, got {chunk}, {horizons}")
    rng = np.random.default_rng(seed)
    data = [_arrays(ep) for ep in episodes]
    # (episode, start, longest horizon that fits) grouped by that horizon -> same chunk layout.
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    starts: list[tuple[int, int]] = []
    for e, (_, acts) in enumerate(data):
        t_len = len(acts)
        valid = t_len - horizons[0] + 1
        if valid <= 0:
            continue
        for t0 in sorted(rng.choice(valid, size=min(starts_per_episode, valid), replace=False)):
            fit = max(h for h in horizons if t0 + h <= t_len)
            groups[fit].append((e, int(t0)))
            starts.append((e, int(t0)))
    g = torch.Generator().manual_seed(seed)
    sums: dict[int, list[float]] = {h: [0.0, 0.0, 0.0] for h in horizons}  # l1, cos, n
    for fit in sorted(groups):
        bounds = rollout_boundaries(fit, chunk, horizons)
        items = groups[fit]
        for i in range(0, len(items), batch_size):
            batch = items[i : i + batch_size]
            s0 = torch.from_numpy(np.stack([data[e][0][t0] for e, t0 in batch])).float().to(device)
            chunks, prev = [], 0
            for b_end in bounds:
                acts = np.stack([data[e][1][t0 + prev : t0 + b_end] for e, t0 in batch])
                chunks.append(torch.from_numpy(acts).float().to(device))
                prev = b_end
            pred = predictor.rollout(s0, chunks, steps=steps, generator=g)
            for j, b_end in enumerate(bounds):
                if b_end not in sums:
                    continue
                gt = (
                    torch.from_numpy(np.stack([data[e][0][t0 + b_end] for e, t0 in batch]))
                    .float()
                    .to(device)
                )
                p = pred[:, j].to(device).float()
                sums[b_end][0] += float((p - gt).abs().mean(dim=(1, 2)).sum())
                sums[b_end][1] += float(F.cosine_similarity(p, gt, dim=-1).mean(dim=1).sum())
                sums[b_end][2] += len(batch)
    out: dict[str, Any] = {
        "chunk": chunk,
        "horizons": horizons,
        "seed": seed,
        "steps": steps,
        "starts": len(starts),
        "l1": {str(h): (s[0] / s[2] if s[2] else None) for h, s in sums.items()},
        "cosine": {str(h): (s[1] / s[2] if s[2] else None) for h, s in sums.items()},
        "count": {str(h): int(s[2]) for h, s in sums.items()},
        "rla_recon_l1": None,
        "rla_recon_cosine": None,
        "rla_recon_count": 0,
    }
    if rla is not None:
        pairs = [(e, t0) for e, t0 in starts if t0 + chunk <= len(data[e][1])]
        l1 = cos = 0.0
        for i in range(0, len(pairs), batch_size):
            batch = pairs[i : i + batch_size]
            s_t = torch.from_numpy(np.stack([data[e][0][t0] for e, t0 in batch])).float()
            s_th = torch.from_numpy(np.stack([data[e][0][t0 + chunk] for e, t0 in batch])).float()
            s_t, s_th = s_t.to(device), s_th.to(device)
            rec = rla.decode(s_t, rla.encode(s_t, s_th))
            l1 += float((rec - s_th).abs().mean(dim=(1, 2)).sum())
            cos += float(F.cosine_similarity(rec, s_th, dim=-1).mean(dim=1).sum())
        if pairs:
            out.update(
                rla_recon_l1=l1 / len(pairs),
                rla_recon_cosine=cos / len(pairs),
                rla_recon_count=len(pairs),
            )
    return out
