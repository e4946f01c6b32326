"""The real-simulator adapter interface shared by LIBERO, robosuite and dm-control.

An adapter wraps one task of one simulator and exposes what data collection, scripted experts and
real-simulator evaluation need: reset (by seed or by a fixed init state), step, an RGB camera frame
at a configurable square resolution, proprioception, success, and privileged state for experts.
Simulator packages are imported lazily inside the concrete adapters.
"""

from __future__ import annotations

import abc
import logging
import os
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Policy", "SimAdapter", "SimStep", "check_resolution", "ensure_headless_gl"]


def ensure_headless_gl() -> None:
    """Default MuJoCo to headless EGL rendering unless the user chose a backend already.

    Must run before mujoco / robosuite / dm_control are imported.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    # robosuite (also under LIBERO) warns on every import that no private macro file exists; that
    # file is a per-user tweak we never need, so drop exactly those notices and keep all others.
    logger = logging.getLogger("robosuite_logs")
    if not any(isinstance(f, _MacroNoticeFilter) for f in logger.filters):
        logger.addFilter(_MacroNoticeFilter())


def check_resolution(resolution: object) -> int:
    """Return ``resolution`` if it is a positive multiple of 16 (the encoders' patch stride).

    Raises:
        ValueError: anything else, naming valid choices.
    """
    if not isinstance(resolution, int) or resolution <= 0 or resolution % 16:
        raise ValueError(
            f"resolution must be a positive multiple of 16 (e.g. 128, 224, 256), got {resolution!r}"
        )
    return resolution


class _MacroNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "private macro file" not in msg and "setup_macros.py" not in msg


@dataclass
class SimStep:
    """What the simulator shows after a reset or a step.

    Attributes:
        frame: ``uint8 (R, R, 3)`` RGB camera image, upright.
        proprio: ``float32 (P,)`` robot proprioception.
        reward: the simulator's own reward for the last step (0.0 after reset).
        success: whether the task is solved in this state.
        state: privileged quantities for scripted experts (object poses, targets...), never given to
            learned models.
    """

    frame: np.ndarray
    proprio: np.ndarray
    reward: float = 0.0
    success: bool = False
    state: dict[str, np.ndarray] = field(default_factory=dict)


class SimAdapter(abc.ABC):
    """One task of one real simulator.

    Attributes:
        sim: ``"libero"``, ``"robosuite"`` or ``"dmc"``.
        task: task name within the simulator (``"libero_object/0"``, ``"Lift"``,
            ``"reacher-easy"``).
        resolution: square camera resolution in pixels.
        action_dim: ``A``; actions are ``float32 (A,)`` within ``[action_low, action_high]``.
        max_steps: the evaluation horizon in control steps.
        num_init_states: number of fixed initial states (LIBERO: 50), or ``None`` for seeded resets.
    """

    sim: str
    task: str
    resolution: int
    action_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    max_steps: int
    num_init_states: int | None = None

    @abc.abstractmethod
    def reset(self, seed: int | None = None, init_state_id: int | None = None) -> SimStep:
        """Start an episode from a seed, or from fixed init state ``init_state_id`` if any."""

    @abc.abstractmethod
    def step(self, action: np.ndarray, *, render: bool = True) -> SimStep:
        """Apply one validated action ``float32 (A,)`` and advance one control step.

        Args:
            action: the action, within ``[action_low, action_high]``.
            render: ``False`` skips the camera for this step (``frame`` is all zeros): for steps
                whose frame nobody reads, e.g. inside an action chunk. The physics, proprio and
                privileged state are the same either way, and a later rendered step shows the
                state it reached exactly as if every step had rendered.
        """

    def get_sim_state(self) -> np.ndarray:
        """Everything that decides what the next actions do, as one ``float64 (S,)`` vector.

        :meth:`set_sim_state` restores it exactly: the same actions then give bit-identical
        physics, frames and features, whatever ran in between. Entry 0 identifies the simulator
        and task; the layout is described in :mod:`rla_gym.sims.state`.
        """
        from rla_gym.sims.state import pack_state

        return pack_state(self.sim, self.task, self._save_state())

    def set_sim_state(self, state: np.ndarray, *, render: bool = True) -> SimStep:
        """Restore a :meth:`get_sim_state` vector and return the observation there.

        Args:
            state: a vector from :meth:`get_sim_state` of this simulator and task.
            render: ``False`` skips the camera (``frame`` is all zeros), as in :meth:`step`.

        Raises:
            ValueError: a state of the wrong shape or saved by another simulator/task; the message
                names the expected and the received value.
        """
        from rla_gym.sims.state import check_state

        body = check_state(state, self.sim, self.task, self.state_size)
        return self._restore_state(body, render)

    def run_from(
        self, state: np.ndarray, actions: np.ndarray, *, render_last: bool = True
    ) -> tuple[SimStep, bool]:
        """Restore ``state`` exactly and run ``actions``; one candidate's real outcome.

        What a planner or a benchmark that tries several chunks from one real state needs: the
        camera renders only the last step (if asked), the one whose frame is read.

        Args:
            state: a :meth:`get_sim_state` vector.
            actions: ``(T, A)`` simulator-unit actions, ``T >= 1``.
            render_last: render the last step's frame.

        Returns:
            ``(the last step, whether the task was solved at any of the T steps)``.
        """
        self.set_sim_state(state, render=False)
        solved, last = False, len(actions) - 1
        for i, action in enumerate(actions):
            step = self.step(action, render=render_last and i == last)
            solved = solved or bool(step.success)
        return step, solved

    def task_score(self, start: SimStep, end: SimStep, solved: bool) -> float:
        """The task's own order of one outcome, from privileged state (higher is better).

        For benchmarks that judge a policy, a reward or a planner against the truth (the planner
        oracle, reward ranking); nothing a policy or the dream sees. Scored between the
        observations ``start`` and ``end`` of a stretch during which the task was ``solved``
        (or not) at some step.

        Raises:
            NotImplementedError: this simulator/task has no privileged score.
        """
        raise NotImplementedError(f"no privileged task score for {self.sim}/{self.task}")

    @property
    def state_size(self) -> int:
        """``S``: the length of :meth:`get_sim_state`'s vector."""
        return 1 + int(self._save_state().size)

    @abc.abstractmethod
    def _save_state(self) -> np.ndarray:
        """The adapter's state without the identity tag, ``float64 (S - 1,)``."""

    @abc.abstractmethod
    def _restore_state(self, body: np.ndarray, render: bool) -> SimStep:
        """Restore a validated :meth:`_save_state` vector and observe (rendering if asked)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the renderer and simulator."""

    def check_action(self, action: np.ndarray) -> np.ndarray:
        """Validate and return ``action`` as ``float32 (A,)``.

        Raises:
            ValueError: wrong shape, NaN/inf, or outside the bounds.
        """
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (self.action_dim,):
            raise ValueError(
                f"{self.sim}/{self.task} expects an action of shape ({self.action_dim},), "
                f"got {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.sim}/{self.task} action contains NaN or inf: {a}")
        if np.any(a < self.action_low - 1e-6) or np.any(a > self.action_high + 1e-6):
            raise ValueError(
                f"{self.sim}/{self.task} action {a} is outside the bounds "
                f"[{self.action_low.tolist()}, {self.action_high.tolist()}]"
            )
        return a

    def __enter__(self) -> SimAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class Policy(Protocol):
    """An action source for one simulator: ``reset`` once per episode, then one call per step."""

    def reset(self, obs: SimStep) -> None:
        """Forget the previous episode; ``obs`` is the observation returned by ``sim.reset``."""

    def __call__(self, obs: SimStep) -> np.ndarray:
        """Return a ``float32 (A,)`` action within the simulator's bounds."""
