"""The search of the planner, apart from any model: CEM / MPPI over sequences of action chunks.

:func:`search_chunks` knows nothing of dreams or simulators: it draws candidate sequences, asks a
``rollout`` callable for their returns and refits its sampling distribution. The dream planner
(:class:`~rla_gym.planning.DreamPlanner`) passes its :meth:`~rla_gym.planning.DreamPlanner.rollout`,
which dreams; ``benchmarks/planner_oracle.py`` overrides that method to run the real simulator
from a restored state (an oracle model), so both search exactly alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rla_gym.planning.config import PlannerConfig

__all__ = ["Rollout", "SearchResult", "search_chunks"]

Rollout = Callable[[torch.Tensor, int], np.ndarray]
"""``(candidates (M, H, S) float32, noise_seed) -> returns float64 (M,)``."""


@dataclass(frozen=True)
class SearchResult:
    """Final distribution of one :func:`search_chunks`.

    Attributes:
        mean: ``(H, S)`` final mean; its first row is the chunk (or residual) to execute.
        std: ``(H, S)`` final standard deviation.
        history: per iteration the candidates' ``mean``, ``best`` and ``elite`` returns and
            ``incumbent``, the return of the distribution's mean (always candidate 0).
        first_candidates: ``(M, H, S)`` the first iteration's samples.
    """

    mean: torch.Tensor
    std: torch.Tensor
    history: list[dict[str, float]]
    first_candidates: torch.Tensor


def search_chunks(
    rollout: Rollout,
    config: PlannerConfig,
    width: float,
    size: int,
    gen: torch.Generator,
    init_mean: torch.Tensor | None = None,
) -> SearchResult:
    """Search ``config.horizon`` chunks of ``size`` values in ``[-width, width]``.

    Args:
        rollout: scores candidates (see :data:`Rollout`).
        config: samples, iterations, horizon, CEM/MPPI and their constants.
        width: half-range of the search space (1 from scratch, the residual scale around a base).
        size: values per chunk, ``K * A``.
        gen: seeds the candidate draws and each iteration's ``noise_seed``.
        init_mean: ``(H, size)`` warm start (clamped to the range); default zeros.
    """
    horizon = config.horizon
    if init_mean is None:
        mean = torch.zeros(horizon, size)
    else:
        mean = init_mean.float().clone().clamp(-width, width)
    std = torch.full((horizon, size), config.init_std * width)
    history: list[dict[str, float]] = []
    first = None
    for _ in range(config.iterations):
        eps = torch.randn(config.samples, horizon, size, generator=gen)
        cand = (mean + std * eps).clamp(-width, width)
        cand[0] = mean  # the incumbent: a warm start (or the pure base policy) is never lost
        if first is None:
            first = cand.clone()
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        ret = torch.from_numpy(np.asarray(rollout(cand, noise_seed), dtype=np.float64))
        mean, std, elite = _refit(config, width, cand, ret)
        history.append({"mean": float(ret.mean()), "best": float(ret.max()), "elite": elite,
                        "incumbent": float(ret[0])})  # fmt: skip
    assert first is not None
    return SearchResult(mean=mean, std=std, history=history, first_candidates=first)


def _refit(
    cfg: PlannerConfig, width: float, cand: torch.Tensor, ret: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """New ``(mean, std)`` of the search distribution from scored candidates ``(B, H, S)``,
    ``(B,)``; also the mean return of the refit's top share."""
    floor = cfg.min_std * width
    if cfg.mode == "cem":
        idx = torch.topk(ret, cfg.num_elites).indices
        elites = cand[idx]
        std = elites.std(0, unbiased=False) if len(idx) > 1 else torch.zeros_like(elites[0])
        return elites.mean(0), std.clamp_min(floor), float(ret[idx].mean())
    # MPPI: returns standardised so the temperature is unit-free across suites and scales.
    spread = ret.std(unbiased=False).clamp_min(1e-8) if len(ret) > 1 else ret.new_ones(())
    w = torch.softmax((ret - ret.max()) / (cfg.temperature * spread), 0).float()
    mean = torch.einsum("b,bhk->hk", w, cand)
    var = torch.einsum("b,bhk->hk", w, (cand - mean).pow(2))
    return mean, var.sqrt().clamp_min(floor), float((w.double() * ret).sum())
