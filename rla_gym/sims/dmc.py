"""dm-control suite adapter (``reacher-easy`` first).

dm_control is imported lazily so that ``import rla_gym`` works without the ``sim`` extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rla_gym.errors import MissingExtraError
from rla_gym.sims.base import SimAdapter, SimStep, check_resolution, ensure_headless_gl

__all__ = ["DMCSim", "parse_dmc_task"]

# dm-control's default episode length for the suite: 20 s of simulated time at 50 Hz control
# (reacher's control timestep is 0.02 s) = 1000 steps.
DMC_DEFAULT_MAX_STEPS = 1000


def parse_dmc_task(task: str) -> tuple[str, str]:
    """Split ``"reacher-easy"`` (or ``"reacher_easy"``) into ``("reacher", "easy")``.

    Domains never contain ``-`` and, except ``ball_in_cup`` / ``point_mass``, never ``_``; so we
    split on the first ``-`` if present, else on the last ``_``.

    Raises:
        ValueError: no separator at all.
    """
    if "-" in task:
        domain, name = task.split("-", 1)
    elif "_" in task:
        domain, name = task.rsplit("_", 1)
    else:
        raise ValueError(
            f"dm-control task must look like 'domain-task' (e.g. 'reacher-easy'), got {task!r}"
        )
    return domain, name


class DMCSim(SimAdapter):
    """One dm-control suite task rendered from a fixed camera.

    For reacher: actions are ``float32 (2,)`` joint torques in ``[-1, 1]``; proprio is
    ``float32 (4,)`` = joint angles (2) + joint velocities (2); success means the finger touches the
    target, i.e. exactly when dm-control's reward is 1.

    Attributes:
        fovy: the field-of-view override in degrees, or ``None`` (the task's camera).
        env: the underlying ``dm_control`` environment.
        physics: its ``Physics`` (privileged; used by scripted experts and tests).
    """

    sim = "dmc"
    num_init_states = None

    def __init__(
        self,
        task: str = "reacher-easy",
        resolution: int = 128,
        camera_id: int = 0,
        max_steps: int = DMC_DEFAULT_MAX_STEPS,
        render: bool = True,
        fovy: float | None = None,
    ) -> None:
        """Load the task.

        Args:
            task: ``"domain-task"`` or ``"domain_task"``, e.g. ``"reacher-easy"``.
            resolution: square camera resolution; a positive multiple of 16.
            camera_id: MuJoCo camera index (reacher: 0 = fixed top-down, 1 = hand).
            max_steps: episode horizon in control steps (default 1000, dm-control's limit).
            render: if False, never render and return black frames (benchmarking only); see
                also ``step(..., render=False)`` to skip single frames.
            fovy: vertical field of view in degrees of camera ``camera_id``, replacing the
                task's (reacher: 45, which shows the whole 0.6 m arena although the arm only
                reaches 0.25 m from the centre); ``None`` keeps the task's camera.

        Raises:
            ValueError: unknown task, bad resolution, max_steps or fovy (or ``fovy`` given for a
                ``camera_id`` that is not a model camera).
            MissingExtraError: dm-control is not installed.
        """
        check_resolution(resolution)
        if max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if fovy is not None and not 0 < fovy < 180:
            raise ValueError(f"fovy must be in (0, 180) degrees, got {fovy}")
        ensure_headless_gl()
        try:
            from dm_control import suite
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise MissingExtraError("dm-control", "sim", "for dm-control tasks") from e

        domain, name = parse_dmc_task(task)
        if (domain, name) not in suite.ALL_TASKS:
            known = ", ".join(f"{d}-{t}" for d, t in suite.ALL_TASKS)
            raise ValueError(f"unknown dm-control task {task!r}; supported tasks: {known}")
        self.task = f"{domain}-{name}"
        self.domain = domain
        self.resolution = resolution
        self.camera_id = camera_id
        self.render = render
        self.max_steps = max_steps
        self._seed_rng = np.random.default_rng()
        # No time limit inside dm-control: it would auto-reset on the step after the last one.
        # The horizon is ours (max_steps), enforced by whoever runs the episode.
        self.env: Any = suite.load(domain, name, task_kwargs={"time_limit": float("inf")})
        self.physics: Any = self.env.physics
        self.fovy = fovy
        if fovy is not None:
            ncam = int(self.physics.model.ncam)
            if not 0 <= camera_id < ncam:
                raise ValueError(
                    f"fovy applies to a model camera: camera_id must be in [0, {ncam}) for "
                    f"{self.task}, got {camera_id}"
                )
            # A model field that MuJoCo reads at every render and resets never touch, so setting
            # it once holds for the life of the simulator.
            self.physics.model.cam_fovy[camera_id] = float(fovy)
        spec = self.env.action_spec()
        self.action_dim = int(spec.shape[0])
        self.action_low = np.asarray(spec.minimum, dtype=np.float32).reshape(self.action_dim)
        self.action_high = np.asarray(spec.maximum, dtype=np.float32).reshape(self.action_dim)

    # ------------------------------------------------------------------ observation helpers

    def _frame(self, render: bool = True) -> np.ndarray:
        if not (self.render and render):
            return np.zeros((self.resolution, self.resolution, 3), dtype=np.uint8)
        self._rebind_gl()
        return np.asarray(
            self.physics.render(self.resolution, self.resolution, camera_id=self.camera_id),
            dtype=np.uint8,
        )

    def _rebind_gl(self) -> None:
        """Really make our EGL context current before rendering.

        dm-control remembers which of *its* contexts is current per thread and skips the rebind when
        it thinks nothing changed; another MuJoCo renderer in the process (robosuite, LIBERO) may
        have bound its own context meanwhile, which would give garbage frames. So force it.
        """
        contexts = getattr(self.physics, "_contexts", None)
        if contexts is None:  # not rendered yet: the first render() creates and binds the context
            return
        gl = contexts.gl
        with gl.make_current() as ctx:
            ctx.call(gl._platform_make_current)

    def _reacher_radii(self) -> float:
        """Target + finger radius: dm-control's reward is 1 iff the distance is within it."""
        return float(self.physics.named.model.geom_size[["target", "finger"], 0].sum())

    def _make_step(self, reward: float = 0.0, render: bool = True) -> SimStep:
        p = self.physics
        proprio = np.concatenate([p.data.qpos, p.data.qvel]).astype(np.float32)
        state: dict[str, np.ndarray] = {
            "qpos": p.data.qpos.copy(),
            "qvel": p.data.qvel.copy(),
        }
        success = False
        if self.domain == "reacher":
            finger = p.named.data.geom_xpos["finger", :2].copy()
            target = p.named.data.geom_xpos["target", :2].copy()
            radii = self._reacher_radii()
            state.update(
                finger_pos=finger,
                target_pos=target,
                to_target=target - finger,
                target_radius=np.array([radii]),
            )
            # Same definition as dm-control's reacher reward (tolerance with zero margin): the
            # finger sphere touches the target sphere.
            success = bool(p.finger_to_target_dist() <= radii)
        return SimStep(
            frame=self._frame(render),
            proprio=proprio,
            reward=float(reward),
            success=success,
            state=state,
        )

    def task_score(self, start: SimStep, end: SimStep, solved: bool) -> float:
        """Reacher: touching the target first, then the finger-to-target distance at the end.

        Touching adds 1, more than any distance in the arena (< 0.5 m), so the order is
        lexicographic. See :meth:`SimAdapter.task_score`.
        """
        if self.domain != "reacher":
            return super().task_score(start, end, solved)
        return float(solved) - float(np.linalg.norm(end.state["to_target"]))

    # ------------------------------------------------------------------ SimAdapter interface

    def reset(self, seed: int | None = None, init_state_id: int | None = None) -> SimStep:
        """Start an episode; the same ``seed`` gives the same initial state and frame.

        Raises:
            ValueError: ``init_state_id`` was given (dm-control has no fixed init states).
        """
        if init_state_id is not None:
            raise ValueError(
                "dm-control tasks have no fixed init states; reset with a seed instead"
            )
        if seed is None:
            seed = int(self._seed_rng.integers(2**31 - 1))
        # The task draws its initial state (joint angles, target position) from task.random; giving
        # it a fresh seeded RandomState equals suite.load(..., task_kwargs={"random": seed})
        # without re-parsing the model every episode.
        self.env.task._random = np.random.RandomState(int(seed))
        self.env.reset()
        return self._make_step()

    def step(self, action: np.ndarray, *, render: bool = True) -> SimStep:
        """Apply ``float32 (A,)`` action within the action spec for one control step.

        ``render=False`` skips the camera (``frame`` is all zeros); see :meth:`SimAdapter.step`.
        """
        a = self.check_action(action)
        ts = self.env.step(a.astype(np.float64))
        return self._make_step(float(ts.reward or 0.0), render)

    def _save_state(self) -> np.ndarray:
        """MuJoCo integration state; for reacher the target position (a *model* quantity that
        the physics state does not cover) is appended as two trailing entries."""
        from rla_gym.sims.state import get_mujoco_state

        state = get_mujoco_state(self.physics.model.ptr, self.physics.data.ptr)
        if self.domain == "reacher":
            target = self.physics.named.model.geom_pos["target", :2]
            state = np.concatenate([state, np.asarray(target, dtype=np.float64)])
        return state

    def _restore_state(self, body: np.ndarray, render: bool) -> SimStep:
        from rla_gym.sims.state import set_mujoco_state

        if self.domain == "reacher":
            self.physics.named.model.geom_pos["target", "x"] = body[-2]
            self.physics.named.model.geom_pos["target", "y"] = body[-1]
            body = body[:-2]
        # reset_context clears everything the integration state does not hold (and lets
        # dm-control run its own post-reset bookkeeping).
        with self.physics.reset_context():
            set_mujoco_state(self.physics.model.ptr, self.physics.data.ptr, body)
        # Without this, a set_sim_state before any reset would make the next step() reset instead.
        self.env._reset_next_step = False
        return self._make_step(render=render)

    def close(self) -> None:
        """Release the renderer and the simulator."""
        env = getattr(self, "env", None)
        if env is not None:
            env.close()
            self.env = None
            self.physics = None
