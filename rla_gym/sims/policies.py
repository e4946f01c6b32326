"""Scripted experts and data-collection policies for the real-simulator adapters.

Every policy follows :class:`Policy`: ``reset(obs)`` at the start of an episode, then
``policy(obs)`` returns a ``float32 (A,)`` action within the adapter's bounds. Experts read the
privileged :attr:`SimStep.state`; the generic policies (random, play) only need the action bounds,
so they work with any :class:`~rla_gym.sims.base.SimAdapter` (LIBERO included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rla_gym.sims.base import Policy, SimAdapter, SimStep
from rla_gym.sims.kinematics import REACHER_LINKS, two_link_ik, wrap_angle

__all__ = [
    "POLICY_KINDS",
    "ActionScale",
    "LiftExpert",
    "PlayPolicy",
    "Policy",
    "RandomPolicy",
    "ReacherExpert",
    "make_policy",
    "perturbed_sequences",
]

POLICY_KINDS: tuple[str, ...] = ("expert", "noisy", "random", "play")


class _ActionNoise:
    """Gaussian action noise plus occasional pauses, turning an expert into a "noisy" expert.

    A pause holds the arm still for a few steps (as a hesitant teleoperator would) while keeping
    the gripper command, so it delays rather than sabotages; the Gaussian noise is what produces
    the failures. With ``noise == 0`` it is the identity.
    """

    def __init__(
        self,
        low: np.ndarray,
        high: np.ndarray,
        noise: float,
        rng: np.random.Generator,
        keep_dims: tuple[int, ...] = (),
    ) -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        self.noise = float(noise)
        self.rng = rng
        self.keep_dims = keep_dims
        # Pauses are rare and short: ~1 pause per 70 steps at noise 0.3, 5-15 steps long.
        self.pause_prob = min(0.05, 0.05 * self.noise)
        self._pause_left = 0

    def reset(self) -> None:
        self._pause_left = 0

    def __call__(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float32).copy()
        if self.noise <= 0:
            return np.clip(a, self.low, self.high)
        if self._pause_left == 0 and self.rng.random() < self.pause_prob:
            self._pause_left = int(self.rng.integers(5, 16))
        if self._pause_left > 0:
            self._pause_left -= 1
            held = a.copy()
            a = np.clip(np.zeros_like(a), self.low, self.high)
            for d in self.keep_dims:
                a[d] = held[d]
        half_range = (self.high - self.low) / 2.0
        a = a + self.rng.normal(0.0, self.noise, size=a.shape).astype(np.float32) * half_range
        return np.clip(a, self.low, self.high).astype(np.float32)


class LiftExpert:
    """Scripted grasp-and-lift for robosuite ``Lift`` with OSC_POSE control.

    A small state machine on the privileged end-effector and cube positions: hover above the cube
    (open gripper), descend around it, close the gripper, lift. If the cube slips out during the
    lift it starts over, which also lets the noisy variant recover sometimes.
    """

    # Phase names, in order.
    HOVER, DESCEND, GRASP, LIFT = range(4)

    def __init__(self, sim: SimAdapter, noise: float = 0.0, seed: int = 0) -> None:
        """Args:
        sim: a robosuite ``Lift`` adapter (7-D actions, gripper last).
        noise: Gaussian action-noise std as a fraction of the half range; 0 for the clean expert.
        seed: seeds the noise.
        """
        if sim.action_dim != 7:
            raise ValueError(f"LiftExpert needs a 7-D OSC_POSE action space, got {sim.action_dim}")
        self.sim = sim
        self.rng = np.random.default_rng(seed)
        self.noise = _ActionNoise(sim.action_low, sim.action_high, noise, self.rng, keep_dims=(6,))
        self.phase = self.HOVER
        self._phase_steps = 0
        self._lift_from: np.ndarray = np.zeros(3)
        self._table_z = 0.0

    # Position gain: an error of 0.1 m commands the controller's full 5 cm/step; smaller errors
    # slow down proportionally, so the arm settles without overshoot.
    _GAIN = 10.0
    _HOVER_HEIGHT = 0.10
    _GRASP_STEPS = 8
    _LIFT_HEIGHT = 0.20

    def reset(self, obs: SimStep) -> None:
        self.phase = self.HOVER
        self._phase_steps = 0
        self.noise.reset()
        self._table_z = float(obs.state["cube_pos"][2])  # the cube starts resting on the table

    def _goto(self, phase: int) -> None:
        self.phase = phase
        self._phase_steps = 0

    def __call__(self, obs: SimStep) -> np.ndarray:
        eef = obs.state["eef_pos"]
        cube = obs.state["cube_pos"]
        self._phase_steps += 1
        gripper = -1.0
        if self.phase == self.HOVER:
            target = cube + np.array([0.0, 0.0, self._HOVER_HEIGHT])
            err = target - eef
            if np.linalg.norm(err[:2]) < 0.01 and abs(err[2]) < 0.03:
                self._goto(self.DESCEND)
        if self.phase == self.DESCEND:
            # Aim slightly below the cube centre so the fingers close around its middle.
            target = cube + np.array([0.0, 0.0, -0.005])
            err = target - eef
            if np.linalg.norm(err) < 0.01 or self._phase_steps > 40:
                self._goto(self.GRASP)
                self._lift_from = eef.copy()
        if self.phase == self.GRASP:
            target = self._lift_from
            gripper = 1.0
            if self._phase_steps > self._GRASP_STEPS:
                self._goto(self.LIFT)
        if self.phase == self.LIFT:
            target = self._lift_from + np.array([0.0, 0.0, self._LIFT_HEIGHT])
            gripper = 1.0
            # Dropped it (cube far from the fingers): start over from the hover pose.
            if np.linalg.norm(cube - eef) > 0.05:
                self._goto(self.HOVER)
                target = cube + np.array([0.0, 0.0, self._HOVER_HEIGHT])
                gripper = -1.0
        action = np.zeros(7, dtype=np.float32)
        action[:3] = np.clip(self._GAIN * (target - eef), -1.0, 1.0)
        action[6] = gripper
        return self.noise(action)


class ReacherExpert:
    """Scripted reacher: analytic inverse kinematics of the 2-link arm, then joint-space PD.

    Episode success for reacher is defined as *in the target at the final step*: the expert reaches
    the target and then holds still there, so this is the stricter of the two possible definitions.

    With ``noise > 0`` the expert also aims at a point offset from the target centre (drawn once per
    episode, std ``noise * 0.1`` m per axis). Gaussian torque noise alone is corrected by the PD
    loop and never causes a failure; an imprecise aim does, in roughly 15% of episodes at 0.3.
    """

    _KP = 4.0
    _KD = 0.4

    def __init__(self, sim: SimAdapter, noise: float = 0.0, seed: int = 0) -> None:
        """Args:
        sim: a dm-control ``reacher`` adapter (2-D torque actions).
        noise: Gaussian action-noise std as a fraction of the half range; 0 for the clean expert.
        seed: seeds the noise.
        """
        if sim.sim != "dmc" or not sim.task.startswith("reacher"):
            raise ValueError(
                f"ReacherExpert needs a dm-control reacher task, got {sim.sim}/{sim.task}"
            )
        self.sim = sim
        self.rng = np.random.default_rng(seed)
        self.noise = _ActionNoise(sim.action_low, sim.action_high, noise, self.rng)
        # Link lengths from the model (body offsets of hand and finger) rather than hard-coded.
        physics: Any = getattr(sim, "physics", None)
        if physics is not None:
            self.l1 = float(physics.named.model.body_pos["hand", "x"])
            self.l2 = float(physics.named.model.body_pos["finger", "x"])
        else:
            self.l1, self.l2 = REACHER_LINKS
        self.aim_std = 0.1 * float(noise)
        self._aim_offset = np.zeros(2)

    def reset(self, obs: SimStep) -> None:
        self.noise.reset()
        if self.aim_std > 0:
            self._aim_offset = self.rng.normal(0.0, self.aim_std, size=2)

    def inverse_kinematics(self, target: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Joint angles ``(2,)`` placing the finger at ``target`` ``(2,)``, nearest to ``q``."""
        return two_link_ik(target, q, (self.l1, self.l2))

    def __call__(self, obs: SimStep) -> np.ndarray:
        q = obs.state["qpos"]
        qd = obs.state["qvel"]
        q_star = self.inverse_kinematics(obs.state["target_pos"] + self._aim_offset, q)
        err = np.array([wrap_angle(q_star[0] - q[0]), q_star[1] - q[1]])
        action = np.clip(self._KP * err - self._KD * qd, -1.0, 1.0).astype(np.float32)
        return self.noise(action)


class RandomPolicy:
    """Independent uniform random actions in ``[action_low, action_high]``."""

    def __init__(self, action_low: np.ndarray, action_high: np.ndarray, seed: int = 0) -> None:
        self.low = np.asarray(action_low, dtype=np.float32)
        self.high = np.asarray(action_high, dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def reset(self, obs: SimStep) -> None:
        pass

    def __call__(self, obs: SimStep) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class PlayPolicy:
    """Smooth, temporally-correlated random motion ("play data") for any simulator.

    Continuous dimensions follow an Ornstein-Uhlenbeck process, mean-reverting to the middle of
    the range, so motions persist for several steps instead of jittering like :class:`RandomPolicy`.
    An optional binary gripper dimension is held at -1 (open) or +1 (close) for a random number of
    steps, then flipped, so play data contains grasps and releases.
    """

    def __init__(
        self,
        action_low: np.ndarray,
        action_high: np.ndarray,
        seed: int = 0,
        theta: float = 0.15,
        sigma: float = 0.25,
        gripper_dim: int | None = None,
        gripper_hold: tuple[int, int] = (10, 40),
    ) -> None:
        """Args:
        action_low: ``(A,)`` lower bounds.
        action_high: ``(A,)`` upper bounds.
        seed: RNG seed.
        theta: OU mean-reversion rate per step (1/theta ~ correlation time in steps).
        sigma: OU noise per step as a fraction of the half range.
        gripper_dim: index of a binary gripper dimension (e.g. -1 for robosuite/LIBERO), or None.
        gripper_hold: min/max steps the gripper command is held before flipping.
        """
        self.low = np.asarray(action_low, dtype=np.float32)
        self.high = np.asarray(action_high, dtype=np.float32)
        self.mid = (self.low + self.high) / 2.0
        self.half = (self.high - self.low) / 2.0
        self.theta = float(theta)
        self.sigma = float(sigma)
        self.gripper_dim = None if gripper_dim is None else gripper_dim % len(self.low)
        self.gripper_hold = gripper_hold
        self.rng = np.random.default_rng(seed)
        self._x = np.zeros_like(self.low)
        self._grip = -1.0
        self._grip_left = 0

    def reset(self, obs: SimStep) -> None:
        self._x = np.zeros_like(self.low)
        self._grip = -1.0
        self._grip_left = int(self.rng.integers(*self.gripper_hold))

    def __call__(self, obs: SimStep) -> np.ndarray:
        # OU in normalised units (x in [-1, 1] maps to [low, high]).
        self._x = self._x - self.theta * self._x + self.rng.normal(0.0, self.sigma, self._x.shape)
        self._x = np.clip(self._x, -1.0, 1.0)
        a = self.mid + self._x * self.half
        if self.gripper_dim is not None:
            if self._grip_left <= 0:
                self._grip = -self._grip
                self._grip_left = int(self.rng.integers(*self.gripper_hold))
            self._grip_left -= 1
            a[self.gripper_dim] = (
                self.mid[self.gripper_dim] + self._grip * self.half[self.gripper_dim]
            )
        return np.clip(a, self.low, self.high).astype(np.float32)


def _make_expert(sim: SimAdapter, noise: float, seed: int) -> Policy:
    if sim.sim == "robosuite" and sim.task == "Lift":
        return LiftExpert(sim, noise=noise, seed=seed)
    if sim.sim == "dmc" and sim.task.startswith("reacher"):
        return ReacherExpert(sim, noise=noise, seed=seed)
    if sim.sim == "libero":
        from rla_gym.sims.libero_expert import LiberoPickPlaceExpert

        return LiberoPickPlaceExpert(sim, noise=noise, seed=seed)
    raise ValueError(
        f"no scripted expert for {sim.sim}/{sim.task}; experts exist for robosuite/Lift, "
        "dmc/reacher-* and libero tasks (use kind 'random' or 'play' otherwise)"
    )


def make_policy(kind: str, sim: SimAdapter, seed: int = 0, noise: float = 0.3) -> Policy:
    """Build a data-collection policy for ``sim``.

    Args:
        kind: ``"expert"`` (clean scripted expert), ``"noisy"`` (expert with ``noise``),
            ``"random"`` (uniform) or ``"play"`` (smooth correlated random motion).
        sim: the adapter the policy will drive.
        seed: RNG seed of the policy.
        noise: action-noise std for ``"noisy"`` (fraction of the half range).

    Raises:
        ValueError: unknown kind, or no expert for this simulator/task.
    """
    if kind == "expert":
        return _make_expert(sim, 0.0, seed)
    if kind == "noisy":
        if noise <= 0:
            raise ValueError(f"kind 'noisy' needs noise > 0, got {noise}")
        return _make_expert(sim, noise, seed)
    if kind == "random":
        return RandomPolicy(sim.action_low, sim.action_high, seed=seed)
    if kind == "play":
        # robosuite and LIBERO put a binary gripper command last.
        gripper_dim = -1 if sim.sim in ("robosuite", "libero") else None
        return PlayPolicy(sim.action_low, sim.action_high, seed=seed, gripper_dim=gripper_dim)
    raise ValueError(f"unknown policy kind {kind!r}; choose one of: {', '.join(POLICY_KINDS)}")


class ActionScale:
    """The linear map between normalised ``[-1, 1]`` actions and a simulator's action bounds.

    The one place actions are scaled (identity for LIBERO, robosuite and reacher): used by
    :class:`~rla_gym.envs.real.RealFeatureEnv` and by code that drives a bare simulator
    (privileged experts, replays from saved states, branch collection).

    Args:
        sim: anything with ``action_low`` and ``action_high``, ``(A,)`` each.
    """

    def __init__(self, sim: Any) -> None:
        self.low = np.asarray(sim.action_low, np.float32)
        self.high = np.asarray(sim.action_high, np.float32)
        self.mid, self.half = (self.high + self.low) / 2, (self.high - self.low) / 2

    def to_sim(self, action: np.ndarray) -> np.ndarray:
        """Normalised ``(..., A)`` -> simulator units ``float32 (..., A)``; the clip only removes
        float rounding past the bounds."""
        return np.clip(self.mid + self.half * action, self.low, self.high).astype(np.float32)

    def from_sim(self, raw: np.ndarray) -> np.ndarray:
        """Simulator units ``(..., A)`` -> normalised ``float32 (..., A)`` in ``[-1, 1]`` (a
        zero-width bound maps to 0)."""
        half = np.where(self.half > 0, self.half, 1)
        return np.clip((raw - self.mid) / half, -1, 1).astype(np.float32)


def perturbed_sequences(
    recorded: np.ndarray, noise_scales: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """The ``M`` action sequences of one start: the recorded one, one per noise scale, a random one
    (the order of :attr:`~rla_gym.evaluation.counterfactual.CounterfactualConfig.outcomes`).

    Args:
        recorded: ``(T, A)`` normalised recorded actions.
        noise_scales: standard deviations of the Gaussian perturbations.
        rng: source of the noise and the random sequence.

    Returns:
        ``float32 (M, T, A)`` in ``[-1, 1]``, ``M = len(noise_scales) + 2``.
    """
    noisy = [
        np.clip(recorded + rng.normal(0.0, s, recorded.shape), -1.0, 1.0) for s in noise_scales
    ]
    random = rng.uniform(-1.0, 1.0, recorded.shape)
    return np.stack([recorded, *noisy, random]).astype(np.float32)
