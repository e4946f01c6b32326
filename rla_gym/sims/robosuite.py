"""robosuite adapter: single-arm manipulation tasks (``Lift`` first) with an OSC_POSE controller.

robosuite is imported lazily so that ``import rla_gym`` works without the ``sim`` extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rla_gym.errors import MissingExtraError
from rla_gym.sims.base import SimAdapter, SimStep, check_resolution, ensure_headless_gl

__all__ = ["ROBOSUITE_TASKS", "RobosuiteSim"]

# Single-arm environments of robosuite 1.4's registry. Two-arm tasks need two robots and a 14-D
# action, which does not fit this adapter. Only "Lift" has a scripted expert.
ROBOSUITE_TASKS: tuple[str, ...] = (
    "Lift",
    "Stack",
    "PickPlaceCan",
    "PickPlaceMilk",
    "PickPlaceBread",
    "PickPlaceCereal",
    "NutAssemblySquare",
    "NutAssemblyRound",
    "Door",
)

# Observables that describe the robot itself rather than the objects of the task.
_ROBOT_PREFIX = "robot0_"


class RobosuiteSim(SimAdapter):
    """One robosuite task with a single arm under operational-space (OSC_POSE) control.

    Actions are ``float32 (7,)`` in ``[-1, 1]``: end-effector position delta (3, scaled by the
    controller to at most 5 cm per step), orientation delta (3, axis-angle, at most 0.5 rad per
    step) and the gripper command (1; -1 open, +1 close). Control runs at 20 Hz.

    Attributes:
        env: the underlying ``robosuite`` environment (for debugging; not part of the interface).
    """

    sim = "robosuite"
    num_init_states = None

    def __init__(
        self,
        task: str = "Lift",
        resolution: int = 128,
        camera: str = "agentview",
        robot: str = "Panda",
        horizon: int = 200,
        render: bool = True,
        fast_render: bool = False,
    ) -> None:
        """Build the environment.

        Args:
            task: a robosuite environment name from :data:`ROBOSUITE_TASKS`.
            resolution: square camera resolution; a positive multiple of 16.
            camera: robosuite camera name.
            robot: robosuite robot name (single arm).
            horizon: episode length in control steps; becomes :attr:`max_steps`.
            render: if False, skip the camera entirely (much faster) and return black frames; for
                benchmarking and expert validation only. ``step(..., render=False)`` skips single
                frames instead.
            fast_render: turn off shadows and reflections; about 2x faster under software (llvmpipe)
                rendering, at the cost of a flatter look. Off by default so frames match stock
                robosuite.

        Raises:
            ValueError: unknown task, bad resolution or horizon.
            MissingExtraError: robosuite is not installed.
        """
        if task not in ROBOSUITE_TASKS:
            raise ValueError(
                f"unknown robosuite task {task!r}; supported tasks: {', '.join(ROBOSUITE_TASKS)}"
            )
        check_resolution(resolution)
        if horizon <= 0:
            raise ValueError(f"horizon must be positive, got {horizon}")
        ensure_headless_gl()
        try:
            import robosuite
            from robosuite.controllers import load_controller_config
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise MissingExtraError("robosuite", "sim", "for robosuite tasks") from e

        self.task = task
        self.resolution = resolution
        self.camera = camera
        self.render = render
        self.fast_render = fast_render
        self.action_dim = 7
        self.action_low = -np.ones(7, dtype=np.float32)
        self.action_high = np.ones(7, dtype=np.float32)
        self.max_steps = horizon
        self._image_key = f"{camera}_image"
        # Unseeded resets draw their seed from here so they differ from each other but never touch
        # the caller's global numpy stream.
        self._seed_rng = np.random.default_rng()
        # Building the model draws from numpy's *global* RNG (Lift's cube size lies in
        # [0.020, 0.022] m), so two processes would otherwise simulate slightly different cubes and
        # render different frames for the same state. Seed it for the build; the caller's
        # stream is restored.
        saved = np.random.get_state()
        try:
            np.random.seed(0)
            self.env: Any = robosuite.make(
                task,
                robots=robot,
                controller_configs=load_controller_config(default_controller="OSC_POSE"),
                has_renderer=False,
                has_offscreen_renderer=render,
                use_camera_obs=render,
                camera_names=camera,
                camera_heights=resolution,
                camera_widths=resolution,
                control_freq=20,
                horizon=horizon,
                # We count steps ourselves; robosuite raising after `horizon` would only get in
                # the way.
                ignore_done=True,
                # A hard reset reloads the MJCF and rebuilds the renderer every episode (~1 s); the
                # soft reset restores the same initial model, so determinism is unaffected.
                hard_reset=False,
                reward_shaping=False,
            )
        finally:
            np.random.set_state(saved)
        if render:
            # robosuite would render the camera on its own sampling timer at every step; the
            # adapter renders it itself, only for the frames that are asked for.
            self.env.modify_observable(self._image_key, "enabled", False)
            if fast_render:
                import mujoco

                # robosuite.make() rendered once, so the offscreen context and its scene exist.
                scn = self.env.sim._render_context_offscreen.scn
                scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
                scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._obs: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ observation helpers

    def _frame(self, render: bool) -> np.ndarray:
        """``uint8 (R, R, 3)`` upright frame of the current state (zeros when not rendering)."""
        if not (self.render and render):
            return np.zeros((self.resolution, self.resolution, 3), dtype=np.uint8)
        from rla_gym.sims.state import render_camera

        # robosuite renders OpenGL-style, bottom row first.
        return np.ascontiguousarray(render_camera(self.env, self._image_key)[::-1], np.uint8)

    def _make_step(
        self, obs: dict[str, np.ndarray], reward: float = 0.0, render: bool = True
    ) -> SimStep:
        self._obs = obs
        eef_pos = np.asarray(obs[f"{_ROBOT_PREFIX}eef_pos"], dtype=np.float64)
        eef_quat = np.asarray(obs[f"{_ROBOT_PREFIX}eef_quat"], dtype=np.float64)
        gripper = np.asarray(obs[f"{_ROBOT_PREFIX}gripper_qpos"], dtype=np.float64)
        proprio = np.concatenate([eef_pos, eef_quat, gripper]).astype(np.float32)
        state: dict[str, np.ndarray] = {
            "eef_pos": eef_pos.copy(),
            "eef_quat": eef_quat.copy(),
            "gripper_qpos": gripper.copy(),
        }
        # Every non-robot, non-image observable is an object quantity (cube_pos, cube_quat, ...);
        # passing them all through keeps other single-arm tasks usable without per-task code.
        for key, value in obs.items():
            if key.startswith(_ROBOT_PREFIX) or key.endswith("_image") or key == "object-state":
                continue
            state[key] = np.array(value, dtype=np.float64)
        return SimStep(
            frame=self._frame(render),
            proprio=proprio,
            reward=float(reward),
            success=bool(self.env._check_success()),
            state=state,
        )

    def task_score(self, start: SimStep, end: SimStep, solved: bool) -> float:
        """Lift: solving first, then how far the cube rose, then the gripper-to-cube distance.

        The stages of robosuite's shaped Lift reward (reach, then lift), weighted so that each
        stage outranks the next. See :meth:`SimAdapter.task_score`.
        """
        if self.task != "Lift":
            return super().task_score(start, end, solved)
        rise = float(end.state["cube_pos"][2] - start.state["cube_pos"][2])
        reach = float(np.linalg.norm(end.state["eef_pos"] - end.state["cube_pos"]))
        return 10.0 * solved + 10.0 * rise - reach

    # ------------------------------------------------------------------ SimAdapter interface

    def reset(self, seed: int | None = None, init_state_id: int | None = None) -> SimStep:
        """Start an episode; the same ``seed`` gives the same initial state and frame.

        robosuite 1.4 samples object placements and joint noise from numpy's *global* RNG, so we
        seed it for the duration of the reset and then restore the caller's global stream.

        Raises:
            ValueError: ``init_state_id`` was given (robosuite has no fixed init states).
        """
        if init_state_id is not None:
            raise ValueError("robosuite tasks have no fixed init states; reset with a seed instead")
        if seed is None:
            seed = int(self._seed_rng.integers(2**31 - 1))
        from rla_gym.sims.state import start_episode

        saved = np.random.get_state()
        try:
            np.random.seed(int(seed))
            obs = self.env.reset()
        finally:
            np.random.set_state(saved)
        start_episode(self.env)
        return self._make_step(obs)

    def step(self, action: np.ndarray, *, render: bool = True) -> SimStep:
        """Apply ``float32 (7,)`` action in ``[-1, 1]`` for one 20 Hz control step.

        ``render=False`` skips the camera (``frame`` is all zeros); see :meth:`SimAdapter.step`.
        """
        a = self.check_action(action)
        obs, reward, _done, _info = self.env.step(a.astype(np.float64))
        return self._make_step(obs, reward, render)

    def _save_state(self) -> np.ndarray:
        """MuJoCo integration state followed by the robot's Python-side state (gripper command,
        controller posture; see :mod:`rla_gym.sims.state`)."""
        from rla_gym.sims.state import get_mujoco_state, robot_state

        sim = self.env.sim
        return np.concatenate(
            [get_mujoco_state(sim.model._model, sim.data._data), robot_state(self.env)]
        )

    def _restore_state(self, body: np.ndarray, render: bool) -> SimStep:
        from rla_gym.sims.state import (
            mujoco_state_size,
            resample_observables,
            set_mujoco_state,
            set_robot_state,
        )

        sim = self.env.sim
        n = mujoco_state_size(sim.model._model)
        set_mujoco_state(sim.model._model, sim.data._data, body[:n])
        set_robot_state(self.env, body[n:])
        return self._make_step(resample_observables(self.env), render=render)

    def close(self) -> None:
        """Release the renderer and the simulator."""
        env = getattr(self, "env", None)
        if env is not None:
            env.close()
            self.env = None
