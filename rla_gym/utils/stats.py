"""Small statistics used in benchmarks and evaluation reports."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["paired_difference", "r2_score", "roc_auc", "spearman", "wilson_interval"]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (average ranks for ties); ``None`` if undefined.

    Undefined below 3 values or when either side is constant.
    """
    from scipy.stats import rankdata

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default).

    Better behaved than the normal approximation near 0 and 1 and for small ``trials``.

    Returns:
        ``(low, high)``; ``(0.0, 1.0)`` when ``trials == 0``.
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)  # exact ends, not 1 - 1e-16
    return lo, hi


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count half).

    The probability that a random positive scores above a random negative (Mann-Whitney U on
    average ranks, the same ranking as :func:`spearman`).

    Raises:
        ValueError: only one class present (the AUC is undefined).
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = rankdata(np.asarray(scores, np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def paired_difference(new: np.ndarray, old: np.ndarray) -> dict[str, float | int]:
    """Paired comparison of two policies on the same episodes (same starts, same noise).

    Args:
        new: ``(E,)`` per-episode values of the new policy (returns, or 0/1 successes).
        old: ``(E,)`` the same episodes under the old policy.

    Returns:
        ``mean`` difference ``new - old``, its 95 % Student-t interval ``ci95 = [lo, hi]``
        (``[mean, mean]`` for fewer than 2 episodes or no spread), and the counts of episodes
        the new policy ``wins``, ``losses`` and ``ties``.
    """
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    if new.shape != old.shape or new.ndim != 1:
        raise ValueError(f"need two (E,) arrays of one length, got {new.shape} and {old.shape}")
    d = new - old
    n, mean = len(d), float(d.mean()) if len(d) else float("nan")
    half = 0.0
    if n >= 2 and d.std(ddof=1) > 0:
        from scipy.stats import t

        half = float(t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return {
        "mean": mean,
        "ci95": [mean - half, mean + half],
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
        "ties": int((d == 0).sum()),
        "episodes": n,
    }


def r2_score(pred: np.ndarray, true: np.ndarray) -> float:
    """Coefficient of determination over every entry: ``1 - SS_res / SS_tot``.

    ``SS_tot`` is taken about each column's mean (the last axis is the variable axis), so a
    prediction of every entry's mean scores 0 and a perfect one 1.

    Args:
        pred, true: ``(..., P)`` arrays of the same shape.
    """
    p = np.asarray(pred, np.float64).reshape(-1, np.shape(pred)[-1])
    y = np.asarray(true, np.float64).reshape(-1, np.shape(true)[-1])
    if p.shape != y.shape or len(y) < 2:
        raise ValueError(f"r2_score needs equal shapes with >= 2 rows, got {p.shape}, {y.shape}")
    ss_tot = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / max(ss_tot, 1e-12)
