"""Receding-horizon control with the dream planner, as a feature policy of the real evaluation.

At every real decision the controller plans ``H`` chunks from the current encoded features and
returns the first; the rest, shifted by one chunk, warm-starts the next plan. The reward needs
the reference demo the episode is aligned with and the elapsed time: the demo is the one whose
first frame is nearest to the episode's first features (the rule the env's reset bank uses) and
the time is counted by the controller, ``K`` control steps per decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rla_gym.envs.rla_world import RewardMode, RLAWorldConfig
from rla_gym.planning.config import PlannerConfig
from rla_gym.planning.planner import DreamPlanner, Plan

__all__ = ["MPCController", "PlannerPolicy"]

Observation = np.ndarray | torch.Tensor | dict[str, np.ndarray]
"""Features ``(N, D)``, or ``{"features": (N, D), "proprio": (P,)}`` for a dream with a body."""


class MPCController:
    """A stateful ``features (N, D) -> chunk (K * A,)`` policy that plans at every call.

    Call :meth:`reset` at the start of every episode (``rla_gym.evaluation.real.rollout``
    does); the first call after it aligns the episode with a reference demo unless
    :meth:`reset` was given one.

    Args:
        planner: the :class:`DreamPlanner` to plan with.

    Attributes:
        demo: reference demo of the current episode (``None`` until the first call).
        t: control steps elapsed in the current episode.
        warm_start: ``(H, K * A)`` the next plan's initial mean (``None`` before the first call).
        last_plan: the latest :class:`Plan`.
        plan_seconds: wall-clock time of every plan of the episode.
    """

    def __init__(self, planner: DreamPlanner) -> None:
        self.planner = planner
        self.demo: int | None = None
        self.t = 0
        self.warm_start: np.ndarray | None = None
        self.last_plan: Plan | None = None
        self.previous: np.ndarray | torch.Tensor | None = None  # the last decision's features
        self.plan_seconds: list[float] = []
        self._rng = np.random.default_rng(planner.config.seed)

    @property
    def reads_body(self) -> bool:
        """Whether it needs the robot's body beside the features: its dream has a body, so the
        real evaluation gives it ``{"features": (N, D), "proprio": (P,)}`` observations."""
        return bool(self.planner.core.body_fields)

    def reset(self, seed: int | None = None, demo: int | None = None, t: int = 0) -> None:
        """Start an episode.

        Args:
            seed: episode seed; with the planner's seed it fixes every plan of the episode.
            demo: reference demo to align with (``None``: nearest by first-frame features).
            t: control step the episode starts at within that demo.
        """
        self.demo, self.t, self.warm_start, self.last_plan = demo, int(t), None, None
        self.previous = None
        self.plan_seconds = []
        base = self.planner.config.seed
        self._rng = np.random.default_rng(base if seed is None else [base, int(seed)])

    @torch.no_grad()
    def __call__(
        self, observation: np.ndarray | torch.Tensor | dict[str, np.ndarray]
    ) -> np.ndarray:
        """Plan from ``features (N, D)``, or from ``{"features": (N, D), "proprio": (P,)}`` when
        the dream has a body; returns the first chunk ``float32 (K * A,)``."""
        body = None
        if isinstance(observation, dict):
            features, body = observation["features"], observation["proprio"]
        else:
            features = observation
        if self.demo is None:
            self.demo = self.planner.nearest_demo(features)
        plan = self.planner.plan(
            features,
            self.demo,
            self.t,
            init_mean=self.warm_start,
            seed=int(self._rng.integers(2**62)),
            previous=self.previous,
            **({} if body is None else {"body": body}),
        )
        # Decisions are one chunk apart: these features are the next decision's earlier frame.
        self.previous = features
        # Shift by one chunk; the new last chunk starts from the prior (zeros: the base policy
        # in residual mode, the middle of the range from scratch).
        self.warm_start = np.concatenate([plan.mean[1:], np.zeros_like(plan.mean[:1])])
        self.t += self.planner.chunk
        self.last_plan = plan
        self.plan_seconds.append(plan.seconds)
        return plan.action


@dataclass(frozen=True)
class PlannerPolicy:
    """Picklable factory of an :class:`MPCController` on a bundle (one per simulator worker).

    ``PlannerPolicy(artifacts, config)()`` returns the controller, a feature policy with a
    ``reset(seed)`` method.

    Attributes:
        artifacts: bundle folder whose world model and reward are planned with.
        config: planner options.
        device: where the world model runs.
        world_model: a world-model checkpoint to plan with instead of the bundle's (``None``:
            the bundle's).
        reward_mode: the dreamed env's reward the candidates are scored by (``"aligned"``,
            ``"goal"`` or ``"progress"``; ``None``: the env's default).
        base_policy: a saved :class:`~rla_gym.agents.ActorCritic` folder, or an SB3 model
            ``.zip``, whose chunks a residual planner searches around (``None``: the bundle's
            base), e.g. the base plus a residual head trained by PPO in the dream, or a policy
            trained from scratch in it.
    """

    artifacts: str
    config: PlannerConfig = field(default_factory=PlannerConfig)
    device: str = "cpu"
    world_model: str | None = None
    reward_mode: RewardMode | None = None
    base_policy: str | None = None

    def __call__(self) -> MPCController:
        torch.set_num_threads(1)  # one core per simulator worker
        base = None
        if self.base_policy is not None and Path(self.base_policy).is_file():
            from rla_gym.utils.checkpoint import load_sb3_model

            base = load_sb3_model(self.base_policy, device=self.device)  # an SB3 model .zip
        elif self.base_policy is not None:
            from rla_gym.agents import ActorCritic

            base = ActorCritic.load(self.base_policy, device=self.device).eval()
        return MPCController(DreamPlanner(self.env_config(), self.config, base_policy=base))

    def env_config(self) -> RLAWorldConfig:
        """The dreamed env planned in (bundle, device, world model, reward mode)."""
        mode = {} if self.reward_mode is None else {"reward_mode": self.reward_mode}
        return RLAWorldConfig(
            artifacts=self.artifacts, device=self.device, world_model=self.world_model, **mode
        )
