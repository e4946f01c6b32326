"""What one suite's counterfactual measurement runs: a frozen dataclass, validated once."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CounterfactualConfig"]


@dataclass(frozen=True, kw_only=True)
class CounterfactualConfig:
    """What one suite's counterfactual measurement runs."""

    states: int = 40
    """Real start states (the targets are read at >= 30)."""
    episodes: int = 10
    """Held-out real episodes the starts are drawn from; even ones expert, odd ones noisy."""
    horizons: tuple[int, ...] = (1, 4)
    """Horizons in chunks of ``K`` control steps."""
    noise_scales: tuple[float, ...] = (0.1, 0.3)
    """Gaussian perturbations of the recorded actions (normalised action units)."""
    policy_noise: float = 0.3
    """Action noise of the noisy scripted policy (the data collector's default)."""
    collection_seed: int = 10_000
    """Episode ``e`` resets with seed ``collection_seed + e``; the bundles were collected with
    seeds derived from 0 (``rla-gym collect --seed 0``)."""
    seed: int = 0
    """Seed of the perturbations, random actions and flow noise."""
    flow_steps: int = 10
    """Euler steps per dreamed chunk (the env's default)."""
    batch_size: int = 64
    """Dreamed rows per world-model call."""

    def __post_init__(self) -> None:
        if self.states < 1 or self.episodes < 1:
            raise ValueError(
                f"states and episodes must be >= 1, got {self.states}, {self.episodes}"
            )
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"horizons must be chunk counts >= 1, got {self.horizons}")
        if any(s <= 0 for s in self.noise_scales):
            raise ValueError(f"noise_scales must be positive, got {self.noise_scales}")
        if self.flow_steps < 1 or self.batch_size < 1:
            raise ValueError("flow_steps and batch_size must be >= 1")

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Names of the ``M`` action sequences executed from every start, in order."""
        return ("recorded", *(f"recorded+noise{s:g}" for s in self.noise_scales), "random")
