"""An SB3 features extractor that reads the scene through a bundle's goal readout.

A reacher policy trained from scratch has to find the target in 64 x 512 patch features from the
reward alone. The bundle's ``"body_goal"`` progress head already learned, supervised on the
bundle's real episodes, where the scene says the body should end up (``ProgressHead.predict_goal``).
:class:`SB3GoalExtractor` hands the policy that readout, frozen, beside where the body is in the
same space: a handful of numbers instead of 32,768, so PPO learns control rather than vision.
Where the goal is a set of joint angles carried as sine / cosine pairs (reacher's joint-space
head), the readout also hands over each joint's wrapped angle error, the quantity a PD loop acts
on: on reacher's true state, PPO with that error solves 100 of 100 held-out starts after 32k
chunks, with the sine / cosine gap alone 31-32 (70-74 after 131k), with the fingertip-to-target
vector 49 (``benchmarks/reacher_policy_input.py``). An effector-goal head reads the goal as a
place for the fingertip; where the body's inverse kinematics is known (reacher), the readout
hands over the joint-angle errors to the nearest way of reaching that place (before 2026-12-08
such a policy saw the place and the gap only). The
readout is part of the policy's weights (saved in its SB3 zip), so reality reads real features
through exactly the lens the dream was read through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rla_gym.data.proprio import (
    angle_pairs,
    effector_joint_error,
    joint_angles,
    places_reachable,
)
from rla_gym.envs.body import FEATURES, PROPRIO, space_reads_body
from rla_gym.reward.progress import ProgressHead, ProgressHeadConfig
from rla_gym.sims.kinematics import wrap_angle

__all__ = ["SB3GoalExtractor", "goal_head_path", "goal_policy_kwargs"]


def goal_head_path(path: str | Path) -> Path:
    """A progress-head checkpoint folder, or a bundle folder -> its head's checkpoint folder.

    Raises:
        FileNotFoundError: neither a head checkpoint nor a bundle with one.
    """
    p = Path(path)
    for cand in (p, p / "progress", p / "checkpoint"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise FileNotFoundError(
        f"{path} holds no progress head (config.json + model.safetensors), nor does its "
        "progress/ or checkpoint/ folder; pass a bundle or a train-progress checkpoint"
    )


class SB3GoalExtractor(BaseFeaturesExtractor):
    """``{"features": (B, N, D), "proprio": (B, P)} -> (B, 3G + P + J)``: the goal read off the
    features by a frozen ``"body_goal"`` progress head, where the body is in the goal's space,
    their difference, the body vector, and the wrapped angle error (goal minus body, radians in
    ``[-pi, pi)``) of each of the ``J`` joints whose angle the goal holds as a sine / cosine pair.

    ``G`` is the head's goal size (2 for a reacher effector-goal head: a place for the
    fingertip, whose ``J = 2`` angle errors are to the nearest joint angles reaching it; the goal
    fields for a joint-space head, reacher's: 4, ``J = 2``; ``J = 0`` for a body whose angles
    are neither in the goal nor known to reach a place: a Panda's). All
    three goal-space vectors are the head's standardised ones, so the difference is the quantity
    its reward is a function of; the angle errors are read from the unstandardised pairs.

    Args:
        observation_space: the ``Dict(features=(N, D), proprio=(P,))`` of an env that shows the
            robot's body.
        head: a progress-head checkpoint folder or a bundle whose ``progress/`` is one; its
            weights are read when the policy is built, then saved with the policy.
        config: the head's config (as :func:`goal_policy_kwargs` records it). With it, a policy
            loaded from its SB3 zip rebuilds the head without ``head`` (another machine, a
            deleted run): the zip's weights replace whatever ``head`` held.

    Raises:
        ValueError: a features-only observation space; a head that predicts no goal, reads
            another body or other features.
        FileNotFoundError: no head at ``head``.
    """

    def __init__(
        self, observation_space: gym.spaces.Dict, head: str, config: dict[str, Any] | None = None
    ) -> None:
        if not space_reads_body(observation_space, "SB3GoalExtractor"):
            raise ValueError(
                "SB3GoalExtractor compares the goal with the robot's body: it needs a "
                "features+proprio observation (obs_mode='features+proprio'), got a Box"
            )
        if config is None:
            net = ProgressHead.from_pretrained(goal_head_path(head))
        else:
            net = ProgressHead(ProgressHeadConfig(**config)).eval()
            # Gone (a policy loaded from its zip elsewhere): SB3 loads the zip's weights next.
            with contextlib.suppress(FileNotFoundError):
                net.load_state_dict(ProgressHead.from_pretrained(goal_head_path(head)).state_dict())
        c = net.config
        if not len(net.goal_idx):
            raise ValueError(
                f"the progress head at {head} has target={c.target!r}; SB3GoalExtractor needs a "
                "'body_goal' head (train-progress --target body_goal)"
            )
        feats, body = observation_space[FEATURES].shape, observation_space[PROPRIO].shape
        if tuple(feats) != (c.num_tokens, c.feature_dim) or body[0] != len(c.proprio_fields):
            raise ValueError(
                f"the progress head at {head} reads features ({c.num_tokens}, {c.feature_dim}) "
                f"and a body of {len(c.proprio_fields)}, but the env shows {tuple(feats)} and "
                f"{tuple(body)}"
            )
        # A joint-space goal carries its joints' angles as sine / cosine pairs. An effector goal
        # is a place: the joint angles reaching it come by inverse kinematics where the body's
        # are known.
        self._fields, self._goal_fields = c.proprio_fields, net.goal_field_names
        self._place_to_angles = c.goal_space == "effector" and places_reachable(c.proprio_fields)
        pairs = [] if c.goal_space == "effector" else angle_pairs(self._goal_fields)
        joints = len(angle_pairs(c.proprio_fields)) if self._place_to_angles else len(pairs)
        self._goal_angles = bool(pairs)
        super().__init__(observation_space, 3 * c.goal_dim + int(body[0]) + joints)
        self.head = net.requires_grad_(False)

    def apply(self, fn: Callable[[nn.Module], None]) -> SB3GoalExtractor:
        """``fn`` on everything but the head. SB3 re-initialises every linear layer of a policy it
        builds (``ortho_init``, through ``apply``): the readout is trained weights, not an
        initialisation, and would otherwise read the scene through random projections."""
        for child in self.children():
            if child is not self.head:
                child.apply(fn)
        fn(self)
        return self

    def train(self, mode: bool = True) -> SB3GoalExtractor:
        """The head stays in eval mode: it is a fixed lens, not part of what PPO trains."""
        super().train(mode)
        self.head.eval()
        return self

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"features": (B, N, D), "proprio": (B, P)} -> (B, 3G + P + J)``."""
        body = observations[PROPRIO].float()
        with torch.no_grad():
            goal = self.head.predict_goal(observations[FEATURES])
            here = self.head.goal_of(body)
            parts = [goal, here, goal - here, body]
            if self._place_to_angles:
                parts.append(effector_joint_error(self._fields, body, self.head.raw_goal(goal)))
            elif self._goal_angles:  # read from the unstandardised pairs
                to = joint_angles(self._goal_fields, self.head.raw_goal(goal))
                now = joint_angles(self._goal_fields, self.head.raw_goal(here))
                parts.append(wrap_angle(to - now))
        return torch.cat(parts, dim=-1)


def goal_policy_kwargs(head: str | Path, **extra: Any) -> dict[str, Any]:
    """``policy_kwargs`` for SB3 ``MultiInputPolicy`` that read the scene through the frozen
    goal readout of ``head`` (:class:`SB3GoalExtractor`).

    Args:
        head: progress-head checkpoint or bundle folder.
        **extra: further policy arguments (``net_arch``, ``log_std_init``, ...).
    """
    path = goal_head_path(head)
    config = ProgressHead.from_pretrained(path).config.to_dict()
    return {
        "features_extractor_class": SB3GoalExtractor,
        "features_extractor_kwargs": {"head": str(path), "config": config},
        **extra,
    }
