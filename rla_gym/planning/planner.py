"""``DreamPlanner``: CEM / MPPI over sequences of action chunks, scored in the batched dream.

A candidate is a sequence of ``H`` chunks. All ``samples`` candidates of an iteration are dreamed
together: one :meth:`DreamCore.dream` call per chunk step with the batch ``B = samples``, and
each step is scored by :meth:`DreamCore.score` (the env's own reward: by default the
video-aligned distance to the start's reference demo at the right time index). A candidate's
return is the sum of its ``H`` rewards. Nothing here runs a simulator.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rla_gym.envs.artifacts import POLICY, nearest_demo
from rla_gym.envs.rla_world import DreamCore, RLAWorldConfig
from rla_gym.errors import MissingWeightsError
from rla_gym.planning.config import PlannerConfig
from rla_gym.planning.search import search_chunks

__all__ = ["DreamPlanner", "Plan"]


@dataclass(frozen=True)
class Plan:
    """The outcome of one :meth:`DreamPlanner.plan` call.

    Attributes:
        action: ``float32 (K * A,)`` chunk to execute now, in ``[-1, 1]``.
        mean: ``float32 (H, K * A)`` final mean of the search distribution: chunks (from
            scratch) or residuals around the base policy (residual mode).
        std: ``float32 (H, K * A)`` its final standard deviation.
        history: one dict per iteration with the candidates' ``mean``, ``best`` and ``elite``
            (mean of the refit's top share) dream returns and ``incumbent``, the return of the
            distribution's mean, which is always candidate 0.
        first_candidates: ``float32 (B, H, K * A)`` the first iteration's samples (search space).
        seconds: wall-clock time of the call.
    """

    action: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    history: list[dict[str, float]]
    first_candidates: np.ndarray
    seconds: float


class DreamPlanner:
    """Sampling-based planner over action chunks in a bundle's dream.

    Args:
        env_config: the dreamed env whose model and reward are planned with (bundle, suite,
            device, reward mode and metric...). Its ``flow_steps`` is replaced by the planner's
            own and uncertainty sampling is switched off.
        config: planner options (default: :class:`PlannerConfig` defaults).
        base_policy: in residual mode, the policy whose chunks are perturbed, any object with
            ``predict(obs (B, N, D), deterministic=True) -> ((B, K * A), _)`` (default: the
            bundle's behaviour-cloned policy ``<bundle>/policy``); one that reads the body
            (``reads_body``, or an SB3 model on ``{"features", "proprio"}``) is shown the dreamed
            body, and one that returns one action ``(B, A)`` holds it for the chunk.

    Raises:
        ValueError: the horizon exceeds the env's episode horizon.
        MissingWeightsError: residual mode without a base policy, and the bundle ships none.
        SpaceMismatchError: the base policy does not map ``(N, D)`` features to ``K * A`` actions.

    Example:
        >>> planner = DreamPlanner(RLAWorldConfig(suite="dmc-reacher"))  # doctest: +SKIP
        >>> plan = planner.plan(features, demo=0, t=0)  # doctest: +SKIP
        >>> plan.action.shape  # doctest: +SKIP
        (16,)
    """

    def __init__(
        self,
        env_config: RLAWorldConfig | None = None,
        config: PlannerConfig | None = None,
        base_policy: Any = None,
    ) -> None:
        cfg = config or PlannerConfig()
        env_cfg = dataclasses.replace(
            env_config or RLAWorldConfig(),
            flow_steps=cfg.flow_steps,
            num_uncertainty_samples=0,
            reward_samples=1,  # candidates are ranked on one dreamed sample each
            render_mode=None,
            action_mode="chunk",
        )
        self.config = cfg
        self.env_config = env_cfg
        self.core = DreamCore(env_cfg)
        core = self.core
        self.chunk, self.action_dim = core.chunk, core.action_dim
        self.action_size = core.chunk * core.action_dim
        if cfg.horizon > self.episode_horizon:
            raise ValueError(
                f"planner horizon {cfg.horizon} chunks is beyond the env's episode horizon of "
                f"{self.episode_horizon} chunks ({core.bundle_path}); pass --horizon <= "
                f"{self.episode_horizon}"
            )
        self.base_policy, self.base_reads_body = None, False
        if cfg.residual:
            self.base_policy = base_policy if base_policy is not None else self._bundle_policy()
            self._check_base(self.base_policy)
        # The search space: whole chunks in [-1, 1], or residuals within +-residual_scale.
        self.width = cfg.residual_scale if cfg.residual else 1.0
        self._rng = np.random.default_rng(cfg.seed)

    # ------------------------------------------------------------------ set-up
    @property
    def episode_horizon(self) -> int:
        """Chunks in one dreamed episode of the env (the longest sensible plan)."""
        return int(self.core.max_episode_steps)

    def _bundle_policy(self) -> Any:
        from rla_gym.agents import ActorCritic

        path = self.core.bundle_path / POLICY
        if not (path / "model.safetensors").exists():
            raise MissingWeightsError(
                f"residual planning needs a base policy, but bundle {self.core.bundle_path} ships "
                f"none ({POLICY}/); pass base_policy=..., rebuild the bundle with --policy, or "
                f"plan from scratch with residual_scale=0"
            )
        return ActorCritic.load(path, device=self.core.device).eval()

    def _check_base(self, policy: Any) -> None:
        """Check a base policy's spaces and note whether it reads the body (``reads_body``, or
        an SB3 model's ``Dict`` observation space).

        Raises:
            SpaceMismatchError: other features, an action that is neither a chunk ``K * A`` nor
                one held action ``A``, or a body-reading base on a dream without a body.
        """
        from rla_gym.agents import SpaceMismatchError
        from rla_gym.envs.body import FEATURES, space_reads_body

        space = getattr(policy, "observation_space", None)  # an SB3 model
        reads = getattr(policy, "reads_body", None)
        if reads is None and space is not None:
            reads = space_reads_body(space, "the planner's base policy")
        obs = tuple(getattr(policy, "observation_shape", ()))
        if not obs and space is not None:
            obs = tuple((space[FEATURES] if reads else space).shape)
        act = getattr(policy, "action_dim", None)
        if act is None and getattr(policy, "action_space", None) is not None:
            act = int(np.prod(policy.action_space.shape))
        want = (self.core.num_tokens, self.core.feature_dim)
        if (obs and obs != want) or (act is not None and act not in (self.action_size,
                                                                     self.action_dim)):  # fmt: skip
            raise SpaceMismatchError(
                f"the base policy maps {obs} -> {act} but the dream has features {want} and "
                f"chunks of K={self.chunk} x A={self.action_dim} = {self.action_size} (or one "
                f"action of {self.action_dim} held for the chunk)"
            )
        if reads and not self.core.body_fields:
            raise SpaceMismatchError(
                "the base policy reads the robot's body, but this bundle's world model dreams "
                "features only; plan around it in a bundle that dreams the body"
            )
        self.base_reads_body = bool(reads)

    def nearest_demo(self, features: np.ndarray | torch.Tensor) -> int:
        """Reference demo an episode starting at ``features (N, D)`` is aligned with: the one
        whose first frame is nearest in L1, the rule that aligns the env's reset bank."""
        f = torch.as_tensor(features, dtype=torch.float32).cpu().numpy()
        return nearest_demo(f, self.core.art.reference[:, 0])

    # ------------------------------------------------------------------ dreaming candidates
    def _generators(self, n: int, seed: int) -> list[torch.Generator]:
        if self.config.common_noise:
            return [torch.Generator().manual_seed(seed) for _ in range(n)]
        return [torch.Generator().manual_seed(seed + i) for i in range(n)]

    def rollout(
        self,
        s0: torch.Tensor,
        demo: int,
        t: int,
        sequences: torch.Tensor,
        noise_seed: int,
        previous: torch.Tensor | None = None,
        body: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Dream ``sequences (M, H, K*A)`` (search space) from ``s0 (N, D)`` (``previous``: the
        features one chunk earlier, for a world model with history; ``body``: the robot's
        ``(P,)`` body vector, for a world model that dreams it).

        The planner's only use of a model: a subclass that overrides it plans, with the same
        search, MPC and reward, in another model (``benchmarks/planner_oracle.py`` runs the real
        simulator from its restored state, an oracle).

        Returns:
            ``(returns (M,) float64, first executed chunks (M, K*A))``.
        """
        m, horizon = sequences.shape[0], sequences.shape[1]
        s = s0.expand(m, *s0.shape).contiguous()
        prev = None if previous is None else previous.expand(m, *s0.shape).contiguous()
        p = None if body is None else body.expand(m, *body.shape).contiguous()
        gens = self._generators(m, noise_seed)
        demo_t = torch.full((m,), int(demo), dtype=torch.long)
        total = np.zeros(m)
        first = sequences[:, 0]
        for h in range(horizon):
            chunk = self.executed(s, sequences[:, h], p)
            if h == 0:
                first = chunk
            s_next, _, p = self.core.dream(
                s, chunk.numpy().astype(np.float32), gens, s_prev=prev, body=p
            )
            prev, s = s, s_next
            # The env scores a chunk at the control step it ends on.
            reward, _ = self.core.score(s, demo_t, np.full(m, t + (h + 1) * self.chunk), p)
            total += reward
        return total, first

    def executed(
        self, s: torch.Tensor, candidates: torch.Tensor, body: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The chunks ``(M, K*A)`` run from features ``s (M, N, D)`` (and bodies ``(M, P)``,
        for a base that reads them) for search-space values ``candidates (M, K*A)``: the base
        policy's chunk plus the residual in residual mode, the candidates themselves from
        scratch; clamped to ``[-1, 1]``. A base that acts with one held action ``(M, A)`` (an
        SB3 policy trained with ``action_mode="repeat"``) gives that action at every step."""
        if self.base_policy is not None:
            from rla_gym.envs.body import FEATURES, PROPRIO

            obs: Any = s.cpu().numpy()
            if self.base_reads_body:
                if body is None:
                    raise ValueError("the base policy reads the robot's body: plan with body=")
                obs = {FEATURES: obs, PROPRIO: body.cpu().numpy()}
            base = torch.as_tensor(self.base_policy.predict(obs, deterministic=True)[0])
            base = base.reshape(len(candidates), -1).to(candidates)
            if base.shape[1] == self.action_dim != self.action_size:
                base = base.repeat(1, self.chunk)  # (M, A) -> (M, K*A): held for the chunk
            candidates = base + candidates
        return candidates.clamp(-1.0, 1.0)

    def _body(self, body: np.ndarray | torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``rollout``'s body argument: ``{}`` without one (so a subclass's ``rollout`` need not
        know the body), else the ``(P,)`` vector as a tensor."""
        if body is None:
            return {}
        # The world model checks it (shape, finite values) and names its fields if it is wrong.
        return {"body": torch.as_tensor(body, dtype=torch.float32).to(self.core.device)}

    def _features(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        s0 = torch.as_tensor(features, dtype=torch.float32).to(self.core.device)
        want = (self.core.num_tokens, self.core.feature_dim)
        if tuple(s0.shape) != want:
            raise ValueError(f"features must have shape {want}, got {tuple(s0.shape)}")
        return s0

    @torch.no_grad()
    def evaluate(
        self,
        features: np.ndarray | torch.Tensor,
        demo: int,
        t: int,
        sequences: np.ndarray | torch.Tensor,
        seed: int = 0,
        previous: np.ndarray | torch.Tensor | None = None,
        body: np.ndarray | torch.Tensor | None = None,
    ) -> np.ndarray:
        """Dream returns of given sequences, as the planner scores its candidates.

        Args:
            features: ``(N, D)`` start features.
            demo: reference demo the reward aligns with.
            t: control step of the start within that demo.
            sequences: ``(M, H', K * A)`` in the search space (chunks, or residuals in
                residual mode).
            seed: flow-noise seed (shared by all rows with ``common_noise``).
            previous: ``(N, D)`` features one chunk before ``features`` (a world model with
                history reads them; ``None``: at rest).
            body: ``(P,)`` the robot's body vector at ``features`` (required by a world model
                that dreams the body, refused by one that does not).

        Returns:
            ``float64 (M,)`` sums of the ``H'`` rewards.
        """
        seq = torch.as_tensor(sequences, dtype=torch.float32).cpu()
        if seq.ndim != 3 or seq.shape[2] != self.action_size:
            raise ValueError(
                f"sequences must have shape (M, H, {self.action_size}), got {tuple(seq.shape)}"
            )
        prev = None if previous is None else self._features(previous)
        s0 = self._features(features)
        return self.rollout(s0, demo, t, seq, seed, prev, **self._body(body))[0]

    # ------------------------------------------------------------------ planning
    @torch.no_grad()
    def plan(
        self,
        features: np.ndarray | torch.Tensor,
        demo: int,
        t: int,
        init_mean: np.ndarray | None = None,
        seed: int | None = None,
        previous: np.ndarray | torch.Tensor | None = None,
        body: np.ndarray | torch.Tensor | None = None,
    ) -> Plan:
        """Search for the best sequence of ``H`` chunks from ``features``.

        Args:
            features: ``(N, D)`` current features.
            demo: reference demo the reward aligns with (see :meth:`nearest_demo`).
            t: control steps elapsed in the episode (the reward's time index).
            init_mean: ``(H, K * A)`` initial mean in the search space (a warm start: the
                previous plan shifted by one chunk); default zeros, i.e. the base policy in
                residual mode.
            seed: seed of this call's candidate draws and flow noise (default: the next draw of
                the planner's own generator).
            previous: ``(N, D)`` features one chunk earlier (read by a world model with
                history; ``None``: at rest, as at an episode's first decision).
            body: ``(P,)`` the robot's current body vector (a world model that dreams the body
                needs it).

        Returns:
            The :class:`Plan`; ``plan.action`` is the chunk to execute.
        """
        t0 = time.perf_counter()
        horizon, size = self.config.horizon, self.action_size
        s0 = self._features(features)
        prev = None if previous is None else self._features(previous)
        body_kw = self._body(body)
        seed = int(self._rng.integers(2**62)) if seed is None else int(seed)
        warm = None
        if init_mean is not None:
            warm = torch.as_tensor(init_mean, dtype=torch.float32)
            if tuple(warm.shape) != (horizon, size):
                raise ValueError(
                    f"init_mean must have shape {(horizon, size)}, got {tuple(warm.shape)}"
                )

        def dream(cand: torch.Tensor, noise_seed: int) -> np.ndarray:
            return self.rollout(s0, demo, t, cand, noise_seed, prev, **body_kw)[0]

        found = search_chunks(
            dream, self.config, self.width, size, torch.Generator().manual_seed(seed), warm
        )
        b0 = body_kw.get("body")
        action = self.executed(s0[None], found.mean[:1], None if b0 is None else b0[None])[0]
        return Plan(
            action=action.numpy().astype(np.float32),
            mean=found.mean.numpy().astype(np.float32),
            std=found.std.numpy().astype(np.float32),
            history=found.history,
            first_candidates=found.first_candidates.numpy(),
            seconds=time.perf_counter() - t0,
        )
