"""Evaluation of world models: prediction fidelity on held-out feature episodes."""

from __future__ import annotations

from rla_gym.evaluation.fidelity import DEFAULT_HORIZONS, evaluate_fidelity, rollout_boundaries

__all__ = ["DEFAULT_HORIZONS", "evaluate_fidelity", "rollout_boundaries"]
