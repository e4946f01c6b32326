"""A scripted pick-and-place expert for LIBERO tasks such as ``libero_object``.

The expert reads the privileged state of :class:`~rla_gym.sims.libero.LiberoSim` (object pose and
bounding box, goal region pose, container bounding box) and drives the OSC_POSE controller with
clipped proportional control through a phase machine: approach above the object, descend, close,
lift, carry above the goal region, lower, open, retreat. Every phase has a timeout; a grasp that
closes on nothing sends the expert back to the approach phase.

With ``noise > 0`` the expert adds Gaussian action noise, grasp-point jitter and random pauses,
which yields diverse, sometimes failing, non-expert trajectories for data collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rla_gym.sims.base import SimStep

if TYPE_CHECKING:
    from rla_gym.sims.libero import LiberoSim

__all__ = ["LiberoPickPlaceExpert"]

_OPEN, _CLOSE = -1.0, 1.0
_POS_SCALE = 0.05  # metres of OSC target offset per unit action (robosuite OSC_POSE output_max)
_ROT_SCALE = 0.5  # radians per unit action

# Phase name -> timeout in control steps (20 Hz).
_PHASES: dict[str, int] = {
    "approach": 70,
    "descend": 40,
    "close": 10,
    "lift": 40,
    "carry": 70,
    "lower": 40,
    "open": 8,
    "retreat": 10_000,
}


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Quaternion ``(4,)`` xyzw to rotation matrix ``(3, 3)``."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _rotvec(mat: np.ndarray) -> np.ndarray:
    """Axis-angle vector ``(3,)`` of a rotation matrix ``(3, 3)``."""
    cos = np.clip((np.trace(mat) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([mat[2, 1] - mat[1, 2], mat[0, 2] - mat[2, 0], mat[1, 0] - mat[0, 1]])
    n = np.linalg.norm(axis)
    if n < 1e-9:
        # angle ~ pi: the axis is the dominant column of (R + I) / 2
        b = (mat + np.eye(3)) / 2.0
        axis = b[:, int(np.argmax(np.diag(b)))]
        n = np.linalg.norm(axis)
    return axis / n * angle


class LiberoPickPlaceExpert:
    """Scripted pick-and-place policy for LIBERO tasks whose goal is ``(In|On obj region)``.

    Args:
        sim: the adapter whose observations this policy will receive (used for bounds and checks).
        noise: standard deviation of Gaussian noise added to the 6 arm action dims (in action
            units); also scales grasp-point jitter (``noise * 2`` cm) and the chance of random
            pauses. ``0`` gives the deterministic expert.
        seed: seed of the noise generator (re-seeded by nothing else; one stream per expert).

    Raises:
        ValueError: if ``sim``'s task has no object/target pair in its goal.
    """

    def __init__(self, sim: LiberoSim, noise: float = 0.0, seed: int = 0) -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if getattr(sim, "_obj_name", None) is None:
            raise ValueError(
                f"{sim.task} has no (predicate object target) goal; the pick-and-place expert "
                "supports tasks like libero_object/*"
            )
        self.sim = sim
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.phase = "approach"
        self._phase_t = 0
        self._retries = 0
        self._pause = 0
        self._ref_rot = np.eye(3)
        self._jitter = np.zeros(3)
        self._grasp_height = 0.0  # eef height above the object's bottom at grasp time

    # ------------------------------------------------------------------ episode control
    def reset(self, obs: SimStep) -> None:
        """Start a new episode from observation ``obs`` (after the sim's reset)."""
        self.phase = "approach"
        self._phase_t = 0
        self._retries = 0
        self._pause = 0
        # Hold the reset (top-down) orientation so contacts cannot tilt the gripper over time.
        self._ref_rot = _quat_to_mat(obs.state["eef_quat"])
        self._new_jitter()

    def _new_jitter(self) -> None:
        self._jitter = np.zeros(3)
        if self.noise > 0:
            self._jitter[:2] = self.rng.normal(0.0, 0.02 * self.noise, size=2)

    def _goto(self, phase: str) -> None:
        self.phase = phase
        self._phase_t = 0

    # ------------------------------------------------------------------ geometry
    def _grasp_z(self, s: dict[str, np.ndarray]) -> float:
        lo, hi = s["object_bbox_min"][2], s["object_bbox_max"][2]
        # Grip a little below the top of tall objects, mid-height of flat ones, and keep the
        # fingertips off the table.
        return float(max(hi - 0.03, 0.5 * (lo + hi), lo + 0.012))

    def _carry_z(self, s: dict[str, np.ndarray]) -> float:
        below = max(self._grasp_height, 0.02)
        return float(max(s["container_bbox_max"][2], s["target_pos"][2]) + below + 0.04)

    def _release_z(self, s: dict[str, np.ndarray]) -> float:
        below = max(self._grasp_height, 0.02)
        floor = max(s["target_pos"][2] + 0.02, s["container_bbox_max"][2] - 0.04)
        return float(floor + below)

    # ------------------------------------------------------------------ control
    def _arm_action(self, eef: np.ndarray, quat: np.ndarray, target: np.ndarray) -> np.ndarray:
        a = np.zeros(6)
        a[:3] = np.clip((target - eef) * 12.0 / (_POS_SCALE * 20.0), -1.0, 1.0)
        err = _rotvec(self._ref_rot @ _quat_to_mat(quat).T)
        a[3:] = np.clip(err * 1.0 / _ROT_SCALE, -1.0, 1.0)
        return a

    def __call__(self, obs: SimStep) -> np.ndarray:
        """Return the next action ``float32 (7,)`` within ``[-1, 1]``; gripper in ``{-1, +1}``."""
        s = obs.state
        eef, quat = s["eef_pos"], s["eef_quat"]
        obj = s["object_pos"] + self._jitter
        grip = _OPEN
        self._phase_t += 1
        if self._phase_t > _PHASES[self.phase] and self.phase != "retreat":
            self._on_timeout(s)

        if self.phase == "approach":
            target = np.array([obj[0], obj[1], self._grasp_z(s) + 0.08])
            if np.linalg.norm(target[:2] - eef[:2]) < 0.01 and abs(target[2] - eef[2]) < 0.02:
                self._goto("descend")
        if self.phase == "descend":
            target = np.array([obj[0], obj[1], self._grasp_z(s)])
            if np.linalg.norm(target - eef) < 0.008:
                self._goto("close")
        if self.phase == "close":
            target = eef.copy()
            grip = _CLOSE
            if self._phase_t >= _PHASES["close"]:
                self._grasp_height = float(eef[2] - s["object_bbox_min"][2])
                self._goto("lift")
        if self.phase == "lift":
            grip = _CLOSE
            target = np.array([eef[0], eef[1], self._carry_z(s)])
            if self._lost_object(s):
                self._retry()
                target, grip = eef + np.array([0.0, 0.0, 0.05]), _OPEN
            elif eef[2] > self._carry_z(s) - 0.02:
                self._goto("carry")
        if self.phase == "carry":
            grip = _CLOSE
            goal = s["target_pos"]
            target = np.array([goal[0], goal[1], self._carry_z(s)])
            if self._lost_object(s):
                self._retry()
                target, grip = eef + np.array([0.0, 0.0, 0.05]), _OPEN
            elif np.linalg.norm(target[:2] - eef[:2]) < 0.015:
                self._goto("lower")
        if self.phase == "lower":
            grip = _CLOSE
            goal = s["target_pos"]
            target = np.array([goal[0], goal[1], self._release_z(s)])
            if abs(target[2] - eef[2]) < 0.01:
                self._goto("open")
        if self.phase == "open":
            target, grip = eef.copy(), _OPEN
            if self._phase_t >= _PHASES["open"]:
                self._goto("retreat")
        if self.phase == "retreat":
            target = np.array([eef[0], eef[1], self._carry_z(s) + 0.05])

        arm = self._arm_action(eef, quat, target)
        if self.noise > 0:
            arm = self._perturb(arm)
        action = np.concatenate([arm, [grip]]).astype(np.float32)
        return np.clip(action, self.sim.action_low, self.sim.action_high)

    def _lost_object(self, s: dict[str, np.ndarray]) -> bool:
        # Fully closed fingers, or an object that stayed behind while the hand rose, mean a miss.
        closed = float(s["gripper_qpos"][0] - s["gripper_qpos"][1]) < 0.004
        behind = float(s["eef_pos"][2] - s["object_bbox_min"][2]) > self._grasp_height + 0.05
        return closed or behind

    def _retry(self) -> None:
        self._retries += 1
        self._new_jitter()
        self._goto("approach" if self._retries <= 2 else "retreat")

    def _on_timeout(self, s: dict[str, np.ndarray]) -> None:
        if self.phase in ("approach", "descend"):
            # Close enough is better than stalling: try the grasp from where we are.
            self._goto("descend" if self.phase == "approach" else "close")
        elif self.phase in ("lift",):
            self._goto("carry")
        elif self.phase in ("carry", "lower"):
            self._goto("open" if self.phase == "lower" else "lower")
        elif self.phase == "open":
            self._goto("retreat")

    def _perturb(self, arm: np.ndarray) -> np.ndarray:
        if self._pause > 0:
            self._pause -= 1
            return np.zeros(6)
        if self.rng.random() < 0.02 * min(self.noise * 5.0, 1.0):
            self._pause = int(self.rng.integers(3, 12))
        return np.clip(arm + self.rng.normal(0.0, self.noise, size=6), -1.0, 1.0)
