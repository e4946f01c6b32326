"""Options of the dream planner, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import tyro

__all__ = ["PlannerConfig", "PlannerMode"]

PlannerMode = Literal["cem", "mppi"]


@dataclass(frozen=True, kw_only=True)
class PlannerConfig:
    """Options of sampling-based model-predictive control in the dream (:class:`DreamPlanner`).

    Standard deviations are fractions of the searched half-range: ``[-1, 1]`` when planning
    from scratch, ``[-residual_scale, residual_scale]`` around the base policy's chunks in
    residual mode. Defaults cost ``iterations * horizon = 6`` batched dream calls of ``samples``
    rows per decision (about 2 s on one CPU core for the embedded bundles).
    """

    mode: PlannerMode = "cem"
    """``cem``: refit mean and std to the top ``elite_fraction`` of the samples; ``mppi``:
    to all samples weighted by ``exp(return / (temperature * std of returns))``."""
    samples: int = 64
    """Candidate sequences per iteration, dreamed in one batched call per chunk step."""
    iterations: int = 3
    """Refits of the sampling distribution per decision."""
    horizon: int = 2
    """``H``: chunks per candidate sequence (at most the env's episode horizon)."""
    elite_fraction: float = 0.1
    """Share of the samples (in ``(0, 1]``) that the CEM refit keeps (at least one)."""
    init_std: float = 0.5
    """Initial standard deviation of every action value, as a fraction of the searched
    half-range."""
    min_std: float = 0.05
    """Floor of the refitted standard deviation (same units), so the search never collapses."""
    temperature: float = 0.5
    """MPPI temperature in units of the returns' standard deviation (smaller: greedier)."""
    residual_scale: float = 0.0
    """``0``: plan chunks from scratch in ``[-1, 1]``. ``> 0``: plan residuals in
    ``[-residual_scale, residual_scale]`` added to the bundle's BC policy's chunk at each
    dreamed state (the paper's residual scale is 0.1)."""
    flow_steps: int = 5
    """Euler steps of the flow sampler per dreamed chunk while planning."""
    common_noise: bool = True
    """All candidates of one iteration share their flow noise, so they are compared on the same
    dreamed futures (common random numbers); fresh noise every iteration."""
    seed: Annotated[int, tyro.conf.arg(name="plan-seed")] = 0
    """Seed of the candidate draws and the flow noise (mixed with the episode's seed)."""

    def __post_init__(self) -> None:
        if self.mode not in ("cem", "mppi"):
            raise ValueError(f"planner mode must be 'cem' or 'mppi', got {self.mode!r}")
        if self.samples < 1:
            raise ValueError(f"planner samples must be >= 1, got {self.samples}")
        if self.iterations < 1:
            raise ValueError(f"planner iterations must be >= 1, got {self.iterations}")
        if self.horizon < 1:
            raise ValueError(f"planner horizon must be >= 1 chunk, got {self.horizon}")
        if not 0.0 < self.elite_fraction <= 1.0:
            raise ValueError(f"planner elite_fraction must be in (0, 1], got {self.elite_fraction}")
        if self.init_std <= 0.0:
            raise ValueError(f"planner init_std must be > 0, got {self.init_std}")
        if not 0.0 <= self.min_std <= self.init_std:
            raise ValueError(
                f"planner min_std must be in [0, init_std={self.init_std}], got {self.min_std}"
            )
        if self.temperature <= 0.0:
            raise ValueError(f"planner temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.residual_scale <= 2.0:
            raise ValueError(
                f"planner residual_scale must be in [0, 2] (0: plan from scratch), got "
                f"{self.residual_scale}"
            )
        if self.flow_steps < 1:
            raise ValueError(f"planner flow_steps must be >= 1, got {self.flow_steps}")

    @property
    def num_elites(self) -> int:
        """Samples the CEM refit keeps: ``max(1, round(elite_fraction * samples))``."""
        return max(1, round(self.elite_fraction * self.samples))

    @property
    def residual(self) -> bool:
        """Whether chunks are planned as residuals around the base policy."""
        return self.residual_scale > 0.0
