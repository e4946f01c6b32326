"""``RLAWorldEnv``: a Gymnasium environment that dreams with RLA-WM instead of simulating.

The heavy lifting lives in :class:`~rla_gym.envs.core.DreamCore`, which works on a batch of
environments at once; the single env (this module) and the native vector env
(:mod:`rla_gym.envs.vector`) are thin shells around it, which is what makes "vector env == N
single envs" hold by construction. The options are :class:`~rla_gym.envs.config.RLAWorldConfig`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rla_gym.envs.artifacts import resolve_artifacts
from rla_gym.envs.config import (
    ActionMode,
    ObsMode,
    RenderBackend,
    RewardMetric,
    RewardMode,
    RLAWorldConfig,
    check_actions,
)
from rla_gym.envs.core import DreamCore, Start

# The names below lived here before the core and the options had modules of their own; they stay
# importable from here because benchmarks, examples and users import them from this module.
__all__ = [
    "ActionMode",
    "DreamCore",
    "ObsMode",
    "RLAWorldConfig",
    "RLAWorldEnv",
    "RenderBackend",
    "RewardMetric",
    "RewardMode",
    "Start",
    "check_actions",
    "resolve_artifacts",
]


# --------------------------------------------------------------------------- single env
class RLAWorldEnv(gym.Env):
    """Robot manipulation dreamed by RLA-WM in the feature space of a frozen image encoder.

    ## Description
    A learned simulator (paper §8, "WMRL"): the state is the grid of patch features of a camera
    frame; each step feeds a chunk of actions to RLA-WM, which samples the features ``K`` control
    steps later by flow matching in the residual-latent-action space of a frozen RLA and decodes
    them. Predictions are fed back autoregressively; no simulator runs, and images are decoded only
    to render (see "Rendering").

    ## Action Space
    One env step is one chunk of ``K`` control steps (``K = 8`` by default, as in the paper's
    WMRL); ``action_mode`` says how an action describes it:

    * ``"chunk"`` (default): ``Box(-1, 1, (K * A,), float32)``, the chunk flattened row-major
      from ``(K, A)``, i.e. ``action.reshape(K, A)[k]`` is control step ``k``. Use it for
      policies that emit chunks: behaviour cloning, residual RL around a BC base (the paper's
      WMRL), the dream planner.
    * ``"repeat"``: ``Box(-1, 1, (A,), float32)``, one action held for all ``K`` control steps
      (the usual DMC action repeat); the same as ``"chunk"`` with the action tiled ``K`` times.
      Use it for RL from scratch on small action spaces (e.g. reacher: 2 numbers per decision
      instead of 16), where a chunk's ``K * A`` independent dimensions make exploration slow.

    Values are mapped linearly from ``[-1, 1]`` to the simulator's bounds recorded in the
    bundle (identity for LIBERO). Out-of-range, non-finite or wrongly shaped actions raise
    ``ValueError``.

    ## Observation Space
    ``obs_mode="patch"``: ``Box(-inf, inf, (N, D), float32)`` patch features (LIBERO default
    encoder: ``N = 64``, ``D = 512``). ``obs_mode="dict"``: ``Dict(patch=(N, D), pooled=(D,))``
    where ``pooled`` is the token mean. ``obs_mode="features+proprio"``: ``Dict(features=(N, D),
    proprio=(P,))``, the features and the robot's dreamed *body vector*
    (:mod:`rla_gym.data.proprio`: reacher ``P = 6``, Panda ``P = 11``; the robosuite / LIBERO
    observation-dict convention), for a bundle whose world model dreams the body; on any other
    bundle it raises ``ValueError``. ``obs_mode="auto"`` (default) is ``"features+proprio"`` on
    such a bundle and ``"patch"`` otherwise (every bundle built before the body existed).

    ## Rewards
    Video-aligned reward: ``-reward_scale * dist(ŝ_t, ref_demo[t])`` where ``ref_demo`` is the
    reference demo the episode is aligned with and ``t`` the control-step index
    (``mode="aligned"``), or ``-reward_scale * dist(ŝ_t, ref_demo[final])`` (``mode="goal"``);
    ``dist`` is mean L1 or ``1 - cos``. Only features enter the reward: no simulator signal.
    ``reward_mode="progress"``: ``reward_scale * progress(ŝ_t)`` from the bundle's learned
    progress head. A bundle with a head also takes ``is_success_estimate`` from it (and reports
    ``info["progress"]``) in every mode.
    ``info`` carries ``reward_l1``, ``dist_to_goal``, ``is_success_estimate`` (L1 to the goal
    below the threshold calibrated on real episodes), ``t``, ``demo`` and, with
    ``num_uncertainty_samples >= 2``, ``uncertainty`` (spread of flow samples, which the state
    does not average: it follows sample 0) and, with ``reward_proprio_weight > 0``, ``body_gap``
    (the dreamed body's standardised gap to the demo's, which the reward subtracts
    ``reward_scale * reward_proprio_weight`` times). With ``reward_samples = R >= 2`` the reward
    and these terms are means over ``R`` flow samples of the next state
    (``is_success_estimate``: their majority), a lower-variance estimate of the expected reward;
    the state still follows sample 0, so the observations are those of ``R = 1``.

    ## Starting State
    ``reset()`` draws, with ``self.np_random``, a start from the reset bank: features of frame 0
    of real episodes (LIBERO: its fixed init states after settling). ``options={"start":
    "demo_random"}`` starts at a random interior frame of a reference demo instead (the reward
    aligns from that frame); ``options["index"]`` picks the bank entry / demo explicitly.
    ``options={"start": "features", "features": f}`` starts from any ``(N, D)`` features ``f``
    of the bundle's encoder, e.g. the encoded first frame of a real episode, to dream the same
    start a real simulator runs; the reward aligns with ``options["demo"]`` or, if absent, the
    reference demo whose first frame is nearest to ``f`` (mean L1, the rule that aligns the reset
    bank). A wrong shape or non-finite features raise ``ValueError``. The flow noise generator is
    seeded from ``self.np_random``: same seed -> same trajectory. A world model trained with a
    history (``WorldModelConfig.history = K``) also reads the features one chunk earlier: an
    episode starts at rest (the start stands in), a ``"demo_random"`` start takes the demo's
    previous row, and ``options["previous_features"]`` gives it for a ``"features"`` start. A
    world model that dreams the body starts from the body of the start's own frame (stored in
    the bundle); a ``"features"`` start then needs ``options["proprio"]``, its ``(P,)`` body
    vector (a missing, wrongly sized or non-finite one raises ``ValueError`` naming the fields).

    ## Episode End
    Never terminates (success is only an estimate). Truncated after ``max_episode_steps`` env
    steps: the bundle's horizon from its manifest (its reference demos' length in chunks; the
    embedded LIBERO bundle: 17), or the ``max_episode_steps`` option. The env truncates itself,
    so ``gym.make``, ``gym.make_vec`` and direct construction all end episodes at the same step.

    ## Arguments
    ```python
    gym.make("RLAWorld-libero-v0", artifacts=None, device="cpu", flow_steps=10,
             reward_mode="aligned", reward_metric="l1", reward_scale=5.0, obs_mode="auto",
             render_mode=None, render_backend="auto", num_uncertainty_samples=0,
             reward_samples=1, guidance=1.0, max_episode_steps=None, reset_demo_fraction=0.0,
             action_mode="chunk")
    gym.make("RLAWorld-libero-v0", config=RLAWorldConfig(...))  # the same, as one object
    ```
    Every option is a field of :class:`RLAWorldConfig` (documented there).
    ``artifacts``: bundle folder (``None``: ``rla_gym/envs/assets/<suite>/``).

    ## Rendering
    ``render_mode="rgb_array"`` returns a ``uint8 (h, w, 3)`` picture of the dreamed state, made
    as ``render_backend`` says. ``"decoder"``: the bundle's frame decoder (a small CNN trained on
    real ``(features, frame)`` pairs, ``rla-gym train-decoder``) turns the dreamed features into a
    frame at the dataset resolution (128 px for the embedded bundles); it shows states no real
    frame holds, blurred where the features are uncertain. ``"nearest"``: the real thumbnail
    (64 px) of the bundle's render bank whose token-mean features are closest; a real picture,
    but only of states the bank holds. ``"auto"`` (default): the decoder when the bundle ships one
    (all embedded bundles do), otherwise nearest. ``self.core.render_backend`` says which is used.
    Rendering never changes the dream: the decoder only reads features.

    ## Version History
    * v0: initial release (chunked actions, video-aligned reward, NN render); later options that
      leave the defaults unchanged: ``action_mode="repeat"``, decoded renders
      (``render_backend``; observations, actions and rewards are untouched), starts from given
      features (``options={"start": "features", ...}``), mid-demo training resets
      (``reset_demo_fraction``), rewards averaged over flow samples (``reward_samples``), world
      models with a history (``options["previous_features"]``), the dreamed body
      (``obs_mode="features+proprio"``, ``options["proprio"]``; ``obs_mode="auto"``, the new
      default, keeps ``"patch"`` on every bundle without a body). Since
      ``reward_samples``, the extra samples of ``num_uncertainty_samples >= 2`` come from a
      second noise stream, so the option no longer changes the dreamed trajectory (seeded
      episodes with it differ from earlier versions after the first step).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self, artifacts: str | None = None, *, config: RLAWorldConfig | None = None, **kwargs: Any
    ) -> None:
        if artifacts is not None:
            kwargs["artifacts"] = artifacts
        cfg = RLAWorldConfig.resolve(config, **kwargs)
        self.config = cfg
        self.core = DreamCore(cfg)
        self.obs_mode: ObsMode = self.core.obs_mode  # "auto" resolved for the bundle
        self.render_mode = cfg.render_mode
        self.observation_space = self.core.single_observation_space()
        self.action_space = self.core.single_action_space()
        self._gen = torch.Generator()
        self._extra_gen = torch.Generator()  # flow samples 1.. (uncertainty, reward samples)
        self._s: torch.Tensor | None = None
        self._prev: torch.Tensor | None = None  # one chunk earlier, for a model with history
        self._body: torch.Tensor | None = None  # (P,) the robot's body, for a body model
        self._demo = torch.zeros(1, dtype=torch.long)
        self._t = 0
        self._elapsed = 0
        self._start: Start | None = None

    @property
    def max_episode_steps(self) -> int:
        """Env steps (chunks) after which an episode is truncated."""
        return self.core.max_episode_steps

    @property
    def manifest(self) -> dict[str, Any]:
        """The bundle's ``manifest.json`` (see :attr:`DreamCore.manifest`)."""
        return self.core.manifest

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        # Models and tensors are rebuilt from the bundle; only the config travels.
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(config=state["config"])  # type: ignore[misc]

    # ------------------------------------------------------------------ API
    def _obs(self) -> np.ndarray | dict[str, np.ndarray]:
        assert self._s is not None
        body = None if self._body is None else self._body[None]
        obs = self.core.observe(self._s[None], self.obs_mode, body)
        return {k: v[0] for k, v in obs.items()} if isinstance(obs, dict) else obs[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        """Start a dreamed episode (see the class docstring for ``options``)."""
        super().reset(seed=seed)
        start = self.core.sample_start(self.np_random, options)
        self.core.seed_generator(self._gen, self.np_random, self._extra_gen)
        self._start, self._s, self._t = start, start.features.clone(), start.t
        self._prev = (start.features if start.previous is None else start.previous).clone()
        self._body = None if start.proprio is None else start.proprio.clone()
        self._elapsed = 0
        self._demo = torch.tensor([start.demo], dtype=torch.long)
        info = {
            "t": self._t,
            "demo": start.demo,
            "start": start.source,
            "start_index": start.index,
            "init_state_id": start.init_state_id,
        }
        return self._obs(), info

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray | dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Dream one chunk of ``K`` control steps."""
        if self._s is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a = check_actions(action, self.action_space.shape, self.core.action_space_desc)
        t = self._t + self.core.chunk
        s_next, reward, terms, body = self.core.transition(
            self._s[None],
            self.core.to_chunks(a[None]),
            [self._gen],
            [self._extra_gen],
            self._demo,
            np.array([t]),
            None if self._prev is None else self._prev[None],
            None if self._body is None else self._body[None],
        )
        self._prev, self._s, self._t = self._s, s_next[0], t
        self._body = None if body is None else body[0]
        self._elapsed += 1
        info: dict[str, Any] = {
            "reward_l1": float(terms["reward_l1"][0]),
            "dist_to_goal": float(terms["dist_to_goal"][0]),
            "is_success_estimate": bool(terms["is_success_estimate"][0]),
            "t": self._t,
            "demo": int(self._demo[0]),
        }
        for optional in ("progress", "uncertainty", "body_gap"):
            if optional in terms:
                info[optional] = float(terms[optional][0])
        truncated = self._elapsed >= self.core.max_episode_steps
        return self._obs(), float(reward[0]), False, truncated, info

    def render(self) -> np.ndarray | None:
        """The current state as ``uint8 (h, w, 3)`` (``rgb_array`` mode; see "Rendering")."""
        if self.render_mode != "rgb_array" or self._s is None:
            return None
        return self.core.render(self._s[None])[0]

    @property
    def state_features(self) -> torch.Tensor | None:
        """The current ``(N, D)`` features (on the core's device), ``None`` before reset."""
        return self._s

    @property
    def state_body(self) -> torch.Tensor | None:
        """The current ``(P,)`` body vector when the world model dreams the body, else ``None``."""
        return self._body
