"""Train an SB3 algorithm for a compute budget, keeping policy snapshots along the way.

Comparisons between a dream-trained and a real-trained agent are fair only at equal compute.
The budget is counted in this process's CPU seconds (all its threads, including a software
renderer's) by default, so a second job on the machine slows both arms alike instead of
shortening one of them; ``clock="wall"`` counts wall-clock seconds instead.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["BudgetCallback", "Clock"]

Clock = Literal["cpu", "wall"]


class BudgetCallback(BaseCallback):
    """Stop training after ``budget_s`` seconds; snapshot the policy at evenly spaced times.

    Args:
        budget_s: training budget in seconds of ``clock``.
        points: snapshots after the untrained one, the last at the end of the budget.
        clock: ``"cpu"`` (process CPU time) or ``"wall"``.

    Attributes:
        snapshots: ``[{"seconds", "timesteps", "state"}]`` policy ``state_dict`` copies, the
            first before any update.
        train_curve: ``[{"seconds", "timesteps", "return"}]`` mean episode return of SB3's
            episode buffer after every rollout (needs a ``VecMonitor``).
    """

    def __init__(self, budget_s: float, points: int = 1, clock: Clock = "cpu") -> None:
        super().__init__()
        if budget_s <= 0 or points < 1:
            raise ValueError(f"budget_s must be > 0 and points >= 1, got {budget_s}, {points}")
        if clock not in ("cpu", "wall"):
            raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
        self.budget_s = float(budget_s)
        self.clock = clock
        self.marks = [budget_s * (i + 1) / points for i in range(points)]
        self.snapshots: list[dict[str, Any]] = []
        self.train_curve: list[dict[str, float]] = []

    def _now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of ``clock`` since training started."""
        return self._now() - self.t0

    def _snapshot(self, elapsed: float) -> None:
        state = copy.deepcopy(self.model.policy.state_dict())
        self.snapshots.append({"seconds": elapsed, "timesteps": int(self.num_timesteps),
                               "state": state})  # fmt: skip

    def _on_training_start(self) -> None:
        self.t0 = self._now()
        self._snapshot(0.0)

    def _on_rollout_end(self) -> None:
        eps = self.model.ep_info_buffer
        if eps:
            self.train_curve.append({"seconds": self.elapsed(),
                                     "timesteps": int(self.num_timesteps),
                                     "return": float(np.mean([e["r"] for e in eps]))})  # fmt: skip

    def _on_step(self) -> bool:
        elapsed = self.elapsed()
        while self.marks and elapsed >= self.marks[0]:
            self.marks.pop(0)
            self._snapshot(elapsed)
        return bool(self.marks)
