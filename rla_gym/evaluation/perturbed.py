"""Closed-loop policies of graded quality, made by perturbing a saved feature policy.

:class:`Perturbed` is a picklable factory (a real-simulator worker builds its own copy); the
:class:`PerturbedPolicy` it returns acts in both worlds: ``predict(obs (B, N, D))`` for a dreamed
vector env and ``policy(features (N, D))`` for a real rollout. Episode ``i``'s random draws come
from its own seeded stream, drawn in the same order at every chunk, so the same seed perturbs the
same way in the dream and in reality (only the features the base reacts to differ).

Used by ``benchmarks/closed_loop.py`` (does the dream rank such policies as reality does?) and by
:mod:`rla_gym.evaluation.record` (their real episodes as world-model training data, with other
scales and seeds than the benchmark's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rla_gym.envs.body import FEATURES

__all__ = ["Perturbed", "PerturbedPolicy"]


@dataclass(frozen=True)
class Perturbed:
    """Picklable factory of a closed-loop policy: the saved ``ActorCritic`` at ``path``
    perturbed (``path=None``: uniform random chunks of ``size`` values). Called, it returns a
    :class:`PerturbedPolicy`.

    Attributes:
        noise: std of Gaussian noise added to every chunk (normalised units), then clipped.
        mix: probability that a chunk is uniform random instead of the base's.
        every: the base decides every ``every``-th chunk and repeats its chunk in between.
    """

    path: str | None
    size: int
    noise: float = 0.0
    mix: float = 0.0
    every: int = 1

    def __post_init__(self) -> None:
        if not (self.noise >= 0 and 0 <= self.mix <= 1 and self.every >= 1 and self.size >= 1):
            raise ValueError(
                f"a perturbed policy needs noise >= 0, 0 <= mix <= 1, every >= 1 and size >= 1; "
                f"got noise={self.noise}, mix={self.mix}, every={self.every}, size={self.size}"
            )

    def __call__(self) -> PerturbedPolicy:
        return PerturbedPolicy(self)


class PerturbedPolicy:
    """One policy for both worlds: ``predict(obs (B, N, D))`` -> ``(float32 (B, size), None)``
    for the dreamed vector env, ``policy(features (N, D))`` -> ``float32 (size,)`` for a real
    rollout; ``reset(seed)`` (one seed per episode in the batch) seeds episode ``i``'s draws."""

    def __init__(self, spec: Perturbed) -> None:
        import torch

        from rla_gym.agents import ActorCritic

        torch.set_num_threads(1)
        self.spec = spec
        self.base = None if spec.path is None else ActorCritic.load(spec.path).eval()
        # A base that reads the body is shown it in both worlds (real evaluation reads this).
        self.reads_body = bool(self.base is not None and self.base.reads_body)
        self.reset(0)

    def reset(self, seed: int | list[int]) -> None:
        seeds = [seed] if isinstance(seed, int) else list(seed)
        self.rngs = [np.random.default_rng(s) for s in seeds]
        self.t, self.last = 0, None

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        if isinstance(obs, dict) and not self.reads_body:  # a body bundle's observation
            obs = obs[FEATURES]
        sp, b = self.spec, len(obs[FEATURES] if isinstance(obs, dict) else obs)
        if len(self.rngs) != b:
            raise ValueError(f"{b} observations for {len(self.rngs)} seeded episodes")
        # Every draw is made at every chunk, in one order, so episode i's stream is the same
        # whichever branch is taken and in either world.
        gauss = np.stack([r.normal(0.0, 1.0, sp.size) for r in self.rngs])
        coin = np.array([r.random() for r in self.rngs])
        uniform = np.stack([r.uniform(-1.0, 1.0, sp.size) for r in self.rngs])
        if self.base is None:
            act = uniform
        elif self.last is not None and self.t % sp.every:
            act = self.last
        else:
            act = self.base.predict(obs, deterministic=True)[0]
        self.last, self.t = act, self.t + 1
        if self.base is not None:
            act = np.where((coin < sp.mix)[:, None], uniform, act + sp.noise * gauss)
        return np.clip(act, -1.0, 1.0).astype(np.float32), None

    def __call__(self, obs: Any) -> np.ndarray:
        """One real observation: features ``(N, D)``, or ``{"features", "proprio"}``."""
        if isinstance(obs, dict):
            return self.predict({k: np.asarray(v)[None] for k, v in obs.items()})[0][0]
        return self.predict(np.asarray(obs)[None])[0][0]
