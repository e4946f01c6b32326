"""The counterfactual metrics: how the dreamed outcomes of different actions from one start
agree with the real ones (direction, magnitude, ranking, L1). Pure numpy on encoded features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rla_gym.utils.stats import spearman

__all__ = ["outcome_metrics", "pair_agreement"]


def pair_agreement(real: np.ndarray, dream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and norm ratio of the outcome differences of one start, over pairs ``i < j``.

    Args:
        real: ``(M, N, D)`` real outcomes.
        dream: ``(M, N, D)`` dreamed outcomes of the same action sequences.

    Returns:
        ``(cosine (P,), ratio (P,))`` for the pairs whose real outcomes differ (a pair of
        identical real outcomes has no direction and is dropped). A dream that does not move at
        all between two sequences scores cosine 0 and ratio 0.
    """
    cos, ratio, keep = _pair_terms(real, dream)
    return cos[keep], ratio[keep]


def _pair_terms(real: np.ndarray, dream: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_agreement` over *every* pair ``i < j`` (``np.triu_indices`` order), with the
    mask of the pairs whose real outcomes differ (the others' ratio is ``nan``)."""
    m = real.shape[0]
    r, d = real.reshape(m, -1).astype(np.float64), dream.reshape(m, -1).astype(np.float64)
    i, j = np.triu_indices(m, k=1)
    dr, dd = r[i] - r[j], d[i] - d[j]
    nr, nd = np.linalg.norm(dr, axis=1), np.linalg.norm(dd, axis=1)
    keep = nr > 0
    dot = (dr * dd).sum(1)
    cos = np.divide(dot, nr * nd, out=np.zeros_like(dot), where=(nr * nd) > 0)
    ratio = np.divide(nd, nr, out=np.full_like(nd, np.nan), where=keep)
    return cos, ratio, keep


def _mean_l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference over the last two axes: ``(..., N, D)`` -> ``(...)``."""
    return np.abs(a - b).mean(axis=(-2, -1))


def outcome_metrics(
    start: np.ndarray,
    real: np.ndarray,
    dream: np.ndarray,
    reference: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The benchmark's metrics for one model and horizon.

    Args:
        start: ``(S, N, D)`` features of the real start states.
        real: ``(S, M, N, D)`` real outcomes.
        dream: ``(S, M, N, D)`` dreamed outcomes of the same sequences.
        reference: ``(S, N, D)`` aligned reference frame of every start (``None``: no ranking).
        names: the ``M`` action sequences' names, to break the direction down by pair.

    Returns:
        ``direction``, ``magnitude_ratio``, ``ranking_spearman`` (``None`` if no start has a
        defined rank correlation), ``l1``, ``copy_last_l1``, ``states``, the counts behind them
        (``pairs``, ``ranked_states``) and the standard errors of the first three over starts
        (``*_se``, from the per-start means; ``None`` below two starts). With ``names`` also
        ``direction_by_pair`` and ``real_distance_by_pair`` (``"<i>~<j>"`` -> the mean cosine, and
        the mean real norm of the outcome difference, over the starts where it is defined):
        how much of the direction comes from sequences that differ a lot (a random chunk) and
        how much from small perturbations of the recorded one.

    Raises:
        ValueError: inconsistent shapes.
    """
    if real.ndim != 4 or dream.shape != real.shape:
        raise ValueError(
            f"real and dream must both be (S, M, N, D), got {real.shape} and {dream.shape}"
        )
    s = real.shape[0]
    if start.shape != (s, *real.shape[2:]):
        raise ValueError(f"start must be (S, N, D) = {(s, *real.shape[2:])}, got {start.shape}")
    if reference is not None and reference.shape != start.shape:
        raise ValueError(
            f"reference must have the start's shape {start.shape}, got {reference.shape}"
        )
    if names is not None and len(names) != real.shape[1]:
        raise ValueError(f"names must name the {real.shape[1]} sequences, got {len(names)}")
    cos, ratio, rho, by_pair = [], [], [], []
    for k in range(s):
        c, r, keep = _pair_terms(real[k], dream[k])
        cos.append(c[keep])
        ratio.append(r[keep])
        by_pair.append(np.where(keep, c, np.nan))
        if reference is not None:
            value = spearman(_mean_l1(real[k], reference[k]), _mean_l1(dream[k], reference[k]))
            if value is not None:
                rho.append(value)
    cos_all, ratio_all = np.concatenate(cos), np.concatenate(ratio)
    extra: dict[str, Any] = {}
    if names is not None:
        i, j = np.triu_indices(len(names), k=1)
        pairs = [f"{names[a]}~{names[b]}" for a, b in zip(i, j, strict=True)]
        table = np.array(by_pair)  # (S, P), nan where the real outcomes coincide
        dist = np.array([np.linalg.norm((x[i] - x[j]).reshape(len(i), -1), axis=1) for x in real])
        extra = {
            "direction_by_pair": {p: _nanmean(table[:, q]) for q, p in enumerate(pairs)},
            "real_distance_by_pair": {p: float(dist[:, q].mean()) for q, p in enumerate(pairs)},
        }
    return {
        "direction": float(cos_all.mean()) if cos_all.size else None,
        "magnitude_ratio": float(ratio_all.mean()) if ratio_all.size else None,
        "ranking_spearman": float(np.mean(rho)) if rho else None,
        "l1": float(_mean_l1(dream, real).mean()),
        "copy_last_l1": float(_mean_l1(start[:, None], real).mean()),
        "states": int(s),
        "pairs": int(cos_all.size),
        "ranked_states": len(rho),
        "direction_se": _standard_error([c.mean() for c in cos if c.size]),
        "magnitude_ratio_se": _standard_error([r.mean() for r in ratio if r.size]),
        "ranking_spearman_se": _standard_error(rho),
        **extra,
    }


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def _standard_error(values: Sequence[float]) -> float | None:
    """Standard error of the mean of per-start values (starts are the independent units)."""
    v = np.asarray(values, np.float64)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size >= 2 else None
