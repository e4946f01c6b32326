"""Real-simulator adapters (LIBERO, robosuite, dm-control), scripted experts and data policies."""

from __future__ import annotations

from rla_gym.sims.base import SimAdapter, SimStep, ensure_headless_gl

__all__ = ["SimAdapter", "SimStep", "ensure_headless_gl"]
