"""Exact save and restore of simulator state, shared by every adapter.

A saved state is one flat ``float64 (S,)`` vector::

    [tag, *mujoco_state, *adapter_extras]

* ``tag`` (entry 0) identifies the simulator and task (CRC-32 of ``"<sim>/<task>"`` and the
  format version, an integer that float64 holds exactly), so a state saved by another task is
  rejected with a clear error even when its length happens to match.
* ``mujoco_state`` is MuJoCo's ``mjSTATE_INTEGRATION`` state (time, qpos, qvel, act, the solver
  warm-start, ctrl, applied forces, mocap poses, ...): everything the next ``mj_step`` reads, so a
  restored state continues *bit-identically* to the run it was saved from by construction.
  robosuite's and LIBERO's flattened states hold only time, qpos and qvel (in these tasks the
  missing warm-start happened to change nothing, but nothing guarantees that).
* ``adapter_extras`` is state outside MuJoCo's that changes what an action does (robosuite's
  smoothed gripper command and the controller's nullspace posture; reacher's target position, a
  *model* quantity).

robosuite-based adapters (robosuite and LIBERO) also need their observables re-sampled in a fixed
phase after a restore; :func:`resample_observables` does that.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = [
    "STATE_FORMAT",
    "check_state",
    "get_mujoco_state",
    "mujoco_state_size",
    "pack_state",
    "refresh_controllers",
    "render_camera",
    "resample_observables",
    "robot_state",
    "set_mujoco_state",
    "set_robot_state",
    "start_episode",
    "state_tag",
]

STATE_FORMAT = 1


def state_tag(sim: str, task: str) -> float:
    """The identity entry of ``sim``/``task``'s saved states (an exact integer in float64)."""
    return float(zlib.crc32(f"rla-gym-state-v{STATE_FORMAT}:{sim}/{task}".encode()))


def pack_state(sim: str, task: str, *parts: np.ndarray) -> np.ndarray:
    """``[tag, *parts]`` as one ``float64 (S,)`` vector."""
    flat = [np.asarray(p, dtype=np.float64).ravel() for p in parts]
    return np.concatenate([[state_tag(sim, task)], *flat])


def check_state(state: Any, sim: str, task: str, size: int) -> np.ndarray:
    """Validate a saved state for ``sim``/``task`` and return its body (``state[1:]``).

    Args:
        state: what the caller wants to restore.
        sim, task: the adapter's identity.
        size: the adapter's full state length ``S`` (tag included).

    Raises:
        ValueError: not a 1-D finite vector, saved by another simulator/task, or of the wrong
            length; the message names the expected and the received value.
    """
    arr = np.asarray(state, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{sim}/{task} expects a state of shape ({size},) from get_sim_state(), got an array "
            f"of shape {arr.shape}"
        )
    tag = state_tag(sim, task)
    if arr[0] != tag:
        raise ValueError(
            f"this state was not saved by {sim}/{task}: its identity tag is {arr[0]:.0f}, expected "
            f"{tag:.0f} (states of shape ({arr.size},) vs ({size},)); restore states only into "
            f"the simulator and task that saved them"
        )
    if arr.shape != (size,):
        raise ValueError(
            f"{sim}/{task} expects a state of shape ({size},), got {arr.shape}; was it saved with "
            f"another robot, model version or rla-gym state format?"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{sim}/{task} state contains NaN or inf")
    return arr[1:]


# --------------------------------------------------------------------------- MuJoCo
def _integration_spec() -> Any:
    import mujoco

    return mujoco.mjtState.mjSTATE_INTEGRATION


def get_mujoco_state(model: Any, data: Any) -> np.ndarray:
    """``float64 (mj_stateSize,)`` integration state of raw ``mujoco.MjModel`` / ``MjData``."""
    import mujoco

    spec = _integration_spec()
    out = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
    mujoco.mj_getState(model, data, out, spec)
    return out


def mujoco_state_size(model: Any) -> int:
    """Length of :func:`get_mujoco_state`'s vector for ``model``."""
    import mujoco

    return int(mujoco.mj_stateSize(model, _integration_spec()))


def set_mujoco_state(model: Any, data: Any, state: np.ndarray) -> None:
    """Write an integration state and recompute derived quantities (``mj_forward``).

    ``mj_forward`` leaves the restored warm-start alone (only ``mj_step`` overwrites it), so the
    next step is the one the saved run took.
    """
    import mujoco

    mujoco.mj_setState(
        model, data, np.ascontiguousarray(state, dtype=np.float64), _integration_spec()
    )
    mujoco.mj_forward(model, data)


# --------------------------------------------------------------------------- robosuite
def _arm_parts(env: Any) -> list[tuple[Any, str, int]]:
    """``(owner, attribute, size)`` of the Python-side robot state that steers the dynamics.

    * ``gripper.current_action``: robosuite's grippers move their command towards the requested
      one by ``speed`` per physics substep; a soft reset keeps the previous episode's value.
    * ``controller.initial_joint``: the nullspace posture the OSC controller pulls the arm
      towards, i.e. the episode's (noisy) initial joints; another episode's value changes every
      later torque.
    """
    parts = []
    for robot in env.robots:
        if robot.has_gripper:
            parts.append(
                (
                    robot.gripper,
                    "current_action",
                    int(np.asarray(robot.gripper.current_action).size),
                )
            )
        parts.append(
            (
                robot.controller,
                "initial_joint",
                int(np.asarray(robot.controller.initial_joint).size),
            )
        )
    return parts


def robot_state(env: Any) -> np.ndarray:
    """The robots' Python-side state of a robosuite env (see :func:`_arm_parts`), flattened."""
    values = [
        np.asarray(getattr(owner, attr), dtype=np.float64).ravel()
        for owner, attr, _ in _arm_parts(env)
    ]
    return np.concatenate(values) if values else np.zeros(0)


def set_robot_state(env: Any, values: np.ndarray) -> None:
    """Restore :func:`robot_state` (after the MuJoCo state) and refresh the controllers."""
    start = 0
    for owner, attr, n in _arm_parts(env):
        v = np.array(values[start : start + n], dtype=np.float64)
        if attr == "initial_joint":
            owner.update_initial_joints(v)
        else:
            setattr(owner, attr, v)
        start += n
    refresh_controllers(env)


def refresh_controllers(env: Any) -> None:
    """Recompute every arm controller's cached kinematics at the current state and aim its goal
    there.

    robosuite's controllers cache the arm's pose, Jacobians and mass matrix and refresh them only
    once per physics substep; after the state is set from outside (a restore, LIBERO's init
    states, or a reset that moves the gripper after building the controller) the first substep
    would use stale values, and the OSC goal of the previous step.
    """
    for robot in env.robots:
        robot.controller.update(force=True)
        robot.controller.reset_goal()


def start_episode(env: Any) -> None:
    """Make the start of a robosuite episode independent of the previous one.

    Gives every gripper a fresh env's smoothed command (a soft reset keeps the previous
    episode's, so the first steps would depend on how the last episode ended) and refreshes the
    controllers (see :func:`refresh_controllers`). Call after every change of the reset state.
    """
    for robot in env.robots:
        if robot.has_gripper:
            g = robot.gripper
            g.current_action = np.zeros(g.dof)
            # A fresh command has shape (dof,) but the first format_action broadcasts it to one
            # value per finger (Panda: (1,) -> (2,)); a zero request leaves the values alone and
            # gives it that shape now, so every saved state has the same length.
            g.format_action(np.zeros(g.dof))
    refresh_controllers(env)


def resample_observables(env: Any) -> dict[str, Any]:
    """Re-sample every observable of a robosuite env at the current state, in a fixed phase.

    robosuite samples observables on a timer that a forced update *advances* by one physics
    substep; forcing an update after every restore (as ``set_state`` + ``_get_observations(
    force_update=True)`` does) therefore shifts which substep of later steps gets observed, by one
    more substep per restore. Resetting the timers first gives the phase of a fresh
    ``env.reset()`` whatever happened before, so later steps observe their last substep.
    """
    for observable in env._observables.values():  # robosuite 1.4 keeps them in this dict
        observable.reset()
    env._update_observables(force=True)
    return env._get_observations()


def render_camera(env: Any, name: str) -> np.ndarray:
    """Render camera observable ``name`` at the current state, bypassing its sampling timer.

    The adapters keep the camera observable disabled so that robosuite never renders on its own
    (rendering dominates the cost of a step) and render exactly when a frame is asked for.

    Returns:
        The raw observable value, ``uint8 (R, R, 3)`` bottom row first (OpenGL order).
    """
    # robosuite 1.4's offscreen renderer never re-binds its EGL context before drawing, so once
    # another MuJoCo renderer in the thread (dm-control, another robosuite or LIBERO env) made its
    # own context current, it would silently draw black or stale frames.
    ctx = getattr(env.sim, "_render_context_offscreen", None)
    if ctx is not None:
        ctx.gl_ctx.make_current()
    cam = env._observables[name]
    cam.set_enabled(True)
    try:
        cam.update(timestep=env.model_timestep, obs_cache=env._obs_cache, force=True)
        return np.array(cam.obs)
    finally:
        cam.set_enabled(False)
