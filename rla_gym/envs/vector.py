"""Native batched env: ``num_envs`` dreamed episodes advanced by one world-model call per step.

Equivalence with ``num_envs`` single envs: env ``i`` owns a ``np.random.Generator`` (seeded with
``seed + i``, as ``SyncVectorEnv`` does) and a CPU ``torch.Generator`` re-seeded from it at every
reset, and draws its own flow noise from it. The random stream of env ``i`` therefore never depends
on the other envs or on the batch size, and ``RLAWorldVectorEnv(n).reset(seed=s)`` reproduces
``RLAWorldEnv().reset(seed=s + i)`` for every ``i`` step by step (up to float rounding of batched
matrix products).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rla_gym.envs.config import ObsMode, RLAWorldConfig, check_actions
from rla_gym.envs.core import DreamCore, Start

__all__ = ["RLAWorldVectorEnv"]


class RLAWorldVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~rla_gym.envs.rla_world.RLAWorldEnv` in one batch.

    Autoreset is ``NEXT_STEP`` (Gymnasium's default): after a step that ends env ``i``, the
    next ``step`` ignores ``actions[i]``, resets env ``i`` and returns its first observation with
    reward 0 and ``terminated = truncated = False``.

    Args:
        num_envs: batch size ``B``.
        artifacts: bundle folder (``None``: the suite's embedded default).
        config: env options (:class:`~rla_gym.envs.rla_world.RLAWorldConfig`); keyword arguments
            override its fields, as for ``RLAWorldEnv``.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        artifacts: str | None = None,
        *,
        config: RLAWorldConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if artifacts is not None:
            kwargs["artifacts"] = artifacts
        cfg = RLAWorldConfig.resolve(config, **kwargs)
        self.config = cfg
        self.core = DreamCore(cfg)
        self.num_envs = int(num_envs)
        self.obs_mode: ObsMode = self.core.obs_mode  # "auto" resolved for the bundle
        self.render_mode = cfg.render_mode
        self.max_episode_steps = self.core.max_episode_steps
        self.single_observation_space = self.core.single_observation_space()
        self.single_action_space = self.core.single_action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        b, dev = self.num_envs, self.core.device
        self._rngs: list[np.random.Generator | None] = [None] * b
        self._gens = [torch.Generator() for _ in range(b)]
        self._extra_gens = [torch.Generator() for _ in range(b)]  # flow samples 1.. of env i
        self._s = torch.zeros(b, self.core.num_tokens, self.core.feature_dim, device=dev)
        self._prev = torch.zeros_like(self._s)  # one chunk earlier, for a model with history
        # (B, P) the robots' bodies when the world model dreams them.
        p = self.core.body_dim
        self._body = torch.zeros(b, p, device=dev) if p else None
        self._demo = torch.zeros(b, dtype=torch.long)
        self._t = np.zeros(b, np.int64)
        self._elapsed = np.zeros(b, np.int64)
        self._autoreset = np.zeros(b, bool)
        self._ever_reset = np.zeros(b, bool)  # stepping needs every env reset at least once

    # ------------------------------------------------------------------ batch seams
    # Public so adapters with other autoreset rules (SB3's same-step reset) drive the batch
    # without reaching into its state: reset some envs, advance all, read the observation.
    def _rng(self, i: int, seed: int | None) -> np.random.Generator:
        if seed is not None or self._rngs[i] is None:
            self._rngs[i], _ = seeding.np_random(seed)
        return self._rngs[i]  # type: ignore[return-value]

    def reset_envs(
        self,
        idx: np.ndarray,
        seeds: list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> list[Start]:
        """Reset envs ``idx`` (same draws, in the same order, as ``RLAWorldEnv.reset``).

        Clears their pending autoreset; the batch counts as reset once every env was reset.

        Args:
            idx: env indices.
            seeds: one seed (or ``None``) per index.
            options: as for ``RLAWorldEnv.reset``.
        """
        starts = []
        for j, i in enumerate(idx):
            rng = self._rng(int(i), None if seeds is None else seeds[j])
            start = self.core.sample_start(rng, self._env_options(options, int(i)))
            self.core.seed_generator(self._gens[i], rng, self._extra_gens[i])
            self._s[i] = start.features
            self._prev[i] = start.features if start.previous is None else start.previous
            if self._body is not None:
                self._body[i] = start.proprio
            self._demo[i] = start.demo
            self._t[i], self._elapsed[i] = start.t, 0
            self._autoreset[i] = False
            self._ever_reset[i] = True
            starts.append(start)
        return starts

    def _env_options(self, options: dict[str, Any] | None, i: int) -> dict[str, Any] | None:
        """Env ``i``'s reset options: row ``i`` of per-env ``features (B, N, D)``,
        ``previous_features (B, N, D)``, ``proprio (B, P)`` and ``demo (B,)``."""
        if not options or options.get("start") != "features" or "features" not in options:
            return options
        b, n, d = self.num_envs, self.core.num_tokens, self.core.feature_dim
        out = dict(options)
        for key in ("features", "previous_features"):
            if options.get(key) is None:
                continue
            f = np.asarray(options[key])
            if f.shape == (b, n, d):
                out[key] = f[i]
            elif f.shape != (n, d):
                raise ValueError(
                    f"options[{key!r}] must have shape ({n}, {d}) or "
                    f"(B={b}, {n}, {d}), got {f.shape}"
                )
        proprio = options.get("proprio")
        if proprio is not None and np.ndim(proprio) == 2:
            if len(proprio) != b:
                raise ValueError(
                    f"options['proprio'] must have shape (P,) or (B={b}, P), got "
                    f"{np.shape(proprio)}"
                )
            out["proprio"] = np.asarray(proprio)[i]
        demo = options.get("demo")
        if demo is not None and np.ndim(demo) == 1:
            if len(demo) != b:
                raise ValueError(f"options['demo'] must be an int or {b} ints, got {len(demo)}")
            out["demo"] = int(demo[i])
        return out

    def advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Dream one chunk for every env, without autoreset.

        Args:
            actions: ``(B, *single_action_space.shape)`` validated like :meth:`step`'s.

        Returns:
            ``(reward (B,), truncated (B,), terms)``; ``terms`` holds the per-env info arrays.
        """
        a = check_actions(
            actions,
            self.action_space.shape,
            f"{self.action_space.shape} rows of {self.core.action_space_desc}",
        )
        t = self._t + self.core.chunk
        s_next, reward, scored, body = self.core.transition(
            self._s,
            self.core.to_chunks(a),
            self._gens,
            self._extra_gens,
            self._demo,
            t,
            self._prev,
            self._body,
        )
        self._prev, self._s, self._body = self._s, s_next, body
        self._t = t
        self._elapsed += 1
        terms = {
            "reward_l1": scored["reward_l1"],
            "dist_to_goal": scored["dist_to_goal"],
            "is_success_estimate": scored["is_success_estimate"],
            "t": self._t.copy(),
            "demo": self._demo.numpy().copy(),
        }
        for optional in ("progress", "uncertainty", "body_gap"):
            if optional in scored:
                terms[optional] = scored[optional]
        return reward, self._elapsed >= self.max_episode_steps, terms

    def observe(self) -> np.ndarray | dict[str, np.ndarray]:
        """The batched observation of the current states."""
        return self.core.observe(self._s, self.obs_mode, self._body)

    @property
    def state_features(self) -> torch.Tensor:
        """``(B, N, D)`` current features (on the core's device)."""
        return self._s

    @property
    def state_body(self) -> torch.Tensor | None:
        """``(B, P)`` current body vectors when the world model dreams the body, else ``None``."""
        return self._body

    @property
    def manifest(self) -> dict[str, Any]:
        """The bundle's ``manifest.json`` (see ``DreamCore.manifest``)."""
        return self.core.manifest

    # ------------------------------------------------------------------ VectorEnv API
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        """Reset all envs (or those in ``options["reset_mask"]``).

        Args:
            seed: an int seeds env ``i`` with ``seed + i``; a list gives one seed per env.
            options: as for ``RLAWorldEnv.reset`` plus an optional boolean ``reset_mask (B,)``;
                with ``"start": "features"``, ``features`` may be ``(B, N, D)`` (row ``i`` for env
                ``i``), ``proprio`` ``(B, P)`` and ``demo`` a sequence of ``B`` ints.
        """
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, bool)), bool)
        if isinstance(seed, int):
            seeds: list[int | None] = [seed + i for i in range(self.num_envs)]
        elif seed is None:
            seeds = [None] * self.num_envs
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"got {len(seed)} seeds for {self.num_envs} envs")
            seeds = list(seed)
        idx = np.flatnonzero(mask)
        starts = self.reset_envs(idx, [seeds[i] for i in idx], options)
        info = {
            "t": self._t.copy(),
            "_t": mask.copy(),
            "demo": self._demo.numpy().copy(),
            "_demo": mask.copy(),
            "init_state_id": np.array([-1] * self.num_envs),
            "_init_state_id": mask.copy(),
        }
        info["init_state_id"][idx] = [s.init_state_id for s in starts]
        return self.observe(), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[
        np.ndarray | dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]
    ]:
        """Advance every env by one chunk in one batched world-model call (NEXT_STEP autoreset)."""
        if not self._ever_reset.all():
            from gymnasium.error import ResetNeeded

            raise ResetNeeded("call reset() before step()")
        done_before = self._autoreset.copy()
        reward, truncated, terms = self.advance(actions)
        # Envs that ended last step were dreamed along (batched call) but their result is
        # discarded: they restart now, exactly as a single env's reset() after its episode ends.
        if done_before.any():
            self.reset_envs(np.flatnonzero(done_before))
            reward[done_before] = 0.0
            truncated[done_before] = False
            terms["t"][done_before] = self._t[done_before]
        terminated = np.zeros(self.num_envs, bool)
        self._autoreset = terminated | truncated
        stepped = ~done_before
        info: dict[str, Any] = {}
        for k, v in terms.items():
            info[k], info[f"_{k}"] = v, stepped.copy()
        return self.observe(), reward, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Every env's state as a tuple of ``uint8 (h, w, 3)`` (decoded or nearest real frame, as
        the ``render_backend`` option says)."""
        if self.render_mode != "rgb_array":
            return None
        return tuple(self.core.render(self._s))

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: models are shared through a cache."""
