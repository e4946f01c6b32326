"""``RLAWorldEnv``: a Gymnasium environment that dreams with RLA-WM instead of simulating.

The heavy lifting lives in :class:`DreamCore`, which works on a batch of environments at once;
the single env (this module) and the native vector env (:mod:`rla_gym.envs.vector`) are thin
shells around it, which is what makes "vector env == N single envs" hold by construction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rla_gym.envs.artifacts import (
    ASSETS_DIR,
    Artifacts,
    ArtifactsNotFoundError,
    how_to_build,
    load_artifacts,
    nearest_demo,
)
from rla_gym.envs.render import nearest_frames
from rla_gym.reward.aligned import AlignedReward
from rla_gym.utils.configs import with_overrides
from rla_gym.world_model.baselines import Predictor

if TYPE_CHECKING:
    from rla_gym.decoder import FrameDecoder

__all__ = [
    "DreamCore",
    "RLAWorldConfig",
    "RLAWorldEnv",
    "Start",
    "check_actions",
    "resolve_artifacts",
]

ObsMode = Literal["patch", "dict"]
ActionMode = Literal["chunk", "repeat"]
RewardMode = Literal["aligned", "goal", "progress"]
RewardMetric = Literal["l1", "cosine"]
RenderBackend = Literal["auto", "decoder", "nearest"]


# --------------------------------------------------------------------------- artifacts lookup
def resolve_artifacts(artifacts: str | Path | None, suite: str) -> Path:
    """The bundle folder: ``artifacts`` itself, or the suite's embedded default.

    Raises:
        ArtifactsNotFoundError: the folder holds no bundle (the message says how to build it).
    """
    path = Path(artifacts) if artifacts is not None else ASSETS_DIR / suite
    if not (path / "manifest.json").exists():
        where = "embedded default " if artifacts is None else ""
        raise ArtifactsNotFoundError(
            f"artifacts not built yet: no {where}bundle for suite {suite!r} at {path}. Build it "
            f"with: {how_to_build(path, suite.split('-')[0])} — or pass artifacts=<bundle folder>"
        )
    return path


@functools.lru_cache(maxsize=8)
def _cached_artifacts(path: str, mtime_ns: int) -> Artifacts:
    # Keyed on the manifest's mtime so a rebuilt bundle is picked up; many envs share one copy.
    return load_artifacts(path)


@functools.lru_cache(maxsize=8)
def _cached_model(path: str, mtime_ns: int, device: str, checkpoint: str | None) -> Predictor:
    return _cached_artifacts(path, mtime_ns).load_world_model(device, checkpoint)


@functools.lru_cache(maxsize=8)
def _cached_progress_head(path: str, mtime_ns: int, device: str) -> Any:
    return _cached_artifacts(path, mtime_ns).load_progress_head(device)


@functools.lru_cache(maxsize=8)
def _cached_decoder(path: str, mtime_ns: int, device: str) -> FrameDecoder:
    return _cached_artifacts(path, mtime_ns).load_decoder(device)


def _pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda[:i]' or 'auto', got {device!r}")
    return device


# --------------------------------------------------------------------------- batched core
@dataclass(frozen=True)
class Start:
    """Where one episode starts.

    Attributes:
        features: ``float32 (N, D)`` start features.
        demo: reference demo the reward aligns with.
        t: control step of the start within that demo (0 for init starts).
        source: ``"init"``, ``"demo_random"`` or ``"features"``.
        index: reset-bank index (init), reference row (demo_random) or -1 (features).
        init_state_id: simulator init state of an init start (``-1``: unknown / not an init start).
        previous: ``float32 (N, D)`` features one chunk before the start, for a world model with
            history (``None``: the scene is at rest, the start frame stands in).
    """

    features: torch.Tensor
    demo: int
    t: int
    source: str
    index: int
    init_state_id: int = -1
    previous: torch.Tensor | None = None


def check_actions(actions: Any, shape: tuple[int, ...], space: str) -> np.ndarray:
    """Validate actions in the normalised space and return them as ``float32``.

    Raises:
        ValueError: wrong shape, NaN/inf, or outside ``[-1, 1]``; the message names ``space``.
    """
    a = np.asarray(actions, dtype=np.float32)
    if a.shape != shape:
        raise ValueError(f"action has shape {a.shape}, expected {space}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf; expected finite values in {space}")
    if np.any(np.abs(a) > 1.0 + 1e-6):
        raise ValueError(
            f"action is outside [-1, 1] (min {a.min():.3g}, max {a.max():.3g}); expected {space}"
        )
    return a


@dataclass(frozen=True, kw_only=True)
class RLAWorldConfig:
    """Every option of a dreamed env (single or batched), validated once.

    ``gym.make(id, **kwargs)`` and the env constructors accept these fields as keyword arguments;
    ``config=`` passes a whole config instead (keyword arguments then override its fields).
    """

    artifacts: str | None = None
    """Bundle folder (``None``: the suite's embedded default ``rla_gym/envs/assets/<suite>/``)."""
    suite: str = "libero"
    """Suite of the embedded default (``libero``, ``robosuite-lift``, ``dmc-reacher``)."""
    device: str = "cpu"
    """``cpu``, ``cuda[:i]`` or ``auto`` (GPU when present)."""
    flow_steps: int = 10
    """Euler steps of the flow sampler per env step."""
    reward_mode: RewardMode = "aligned"
    """``aligned``: distance to the reference demo at the same time index; ``goal``: to its final
    frame; ``progress``: ``reward_scale`` x the bundle's learned progress head (in ``[0, 1]``,
    trained on real expert, noisy, failed and random episodes; the bundle must ship one)."""
    reward_metric: RewardMetric = "l1"
    """``l1`` (mean absolute difference) or ``cosine`` (1 - cosine similarity per token)."""
    reward_scale: float = 5.0
    """Reward multiplier."""
    obs_mode: ObsMode = "patch"
    """``patch``: ``(N, D)`` features; ``dict``: ``{"patch", "pooled"}``."""
    render_mode: str | None = None
    """``None`` or ``rgb_array`` (a frame of the dreamed state; ``render_backend`` says how)."""
    render_backend: RenderBackend = "auto"
    """How ``rgb_array`` frames are made: ``decoder``: the bundle's frame decoder applied to the
    dreamed features (the bundle must ship one); ``nearest``: the real frame of the bundle's render
    bank whose token-mean features are closest; ``auto``: the decoder when the bundle has one,
    otherwise nearest."""
    num_uncertainty_samples: int = 0
    """``S``: with ``S >= 2`` every step draws ``S`` flow samples and reports their spread in
    ``info["uncertainty"]``. The state follows sample 0, whose noise is drawn exactly as without
    the option (the extra samples come from a second stream), so the dream is unchanged."""
    reward_samples: int = 1
    """``R``: with ``R >= 2`` every step draws ``R`` flow samples and pays the mean of their
    rewards; the reward's terms (``reward_l1``, ``dist_to_goal``, ``progress``) are means too and
    ``is_success_estimate`` is the samples' majority vote. Only the reward is averaged: the state
    follows sample 0 as with ``num_uncertainty_samples`` (same seed, same observations as
    ``R = 1``, up to float rounding of the larger batch). ``max(S, R)`` samples are drawn in one
    batched world-model call: a step integrates that many flow rows per env, which costs a single
    CPU env little (``R = 8``: about 1.2-1.6x the step time) and a large batch about ``R`` times
    (``benchmarks/reward_samples.py``)."""
    world_model: str | None = None
    """Another world-model checkpoint to dream with instead of the bundle's (same encoder, same
    action chunks): compare models or ablations on one bundle's starts, reward and spaces."""
    guidance: float = 1.0
    """Classifier-free guidance weight over the action at every dreamed step (``1``: off; ``> 1``
    amplifies how much the action changes the prediction, at twice the flow cost). Needs a bundle
    whose world model was trained with action dropout; otherwise the env raises at construction."""
    max_episode_steps: int | None = None
    """Truncation after this many env steps (chunks). ``None``: the bundle's horizon, recorded in
    its manifest — the one number every way of building the env (``gym.make``,
    ``gym.make_vec``, the classes directly, the pipelines) reads."""
    reset_demo_fraction: float = 0.0
    """Probability that a reset with no ``start`` option (every autoreset while training)
    starts at a random interior row of a random reference demo instead of a reset-bank start
    (paper: 0.5, with episodes of at most 6 chunks). A training option: evaluations pass
    ``start`` explicitly and are unaffected."""
    action_mode: ActionMode = "chunk"
    """``chunk``: an action is a flattened ``(K, A)`` chunk, ``(K * A,)``; ``repeat``: one
    ``(A,)`` action held for the ``K`` control steps of a chunk (DMC-style action repeat)."""

    def __post_init__(self) -> None:
        if self.flow_steps < 1:
            raise ValueError(f"flow_steps must be >= 1, got {self.flow_steps}")
        if not (self.guidance >= 0 and np.isfinite(self.guidance)):
            raise ValueError(f"guidance must be a finite weight >= 0, got {self.guidance}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(
                f"max_episode_steps must be >= 1 or None, got {self.max_episode_steps}"
            )
        if not 0.0 <= self.reset_demo_fraction <= 1.0:
            raise ValueError(
                f"reset_demo_fraction must be in [0, 1], got {self.reset_demo_fraction}"
            )
        if self.num_uncertainty_samples < 0 or self.num_uncertainty_samples == 1:
            raise ValueError(
                "num_uncertainty_samples must be 0 (off) or >= 2, got "
                f"{self.num_uncertainty_samples}"
            )
        if self.reward_samples < 1:
            raise ValueError(
                f"reward_samples must be >= 1 (1: the reward of the one dreamed state), got "
                f"{self.reward_samples}"
            )
        if self.reward_mode not in ("aligned", "goal", "progress"):
            raise ValueError(
                f"reward_mode must be 'aligned', 'goal' or 'progress', got {self.reward_mode!r}"
            )
        if self.reward_metric not in ("l1", "cosine"):
            raise ValueError(f"reward_metric must be 'l1' or 'cosine', got {self.reward_metric!r}")
        if self.action_mode not in ("chunk", "repeat"):
            raise ValueError(f"action_mode must be 'chunk' or 'repeat', got {self.action_mode!r}")
        if self.obs_mode not in ("patch", "dict"):
            raise ValueError(f"obs_mode must be 'patch' or 'dict', got {self.obs_mode!r}")
        if self.render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {self.render_mode!r}")
        if self.render_backend not in ("auto", "decoder", "nearest"):
            raise ValueError(
                f"render_backend must be 'auto', 'decoder' or 'nearest', got "
                f"{self.render_backend!r}"
            )
        _pick_device(self.device)

    @classmethod
    def resolve(cls, config: RLAWorldConfig | None, **overrides: Any) -> RLAWorldConfig:
        """``config`` (default: all defaults) with ``overrides`` applied; unknown keys raise."""
        return with_overrides(cls, config, overrides, "RLAWorld")


class DreamCore:
    """Bank, world model and reward of a bundle, operating on batches of environments.

    Args:
        config: the env options (see :class:`RLAWorldConfig`).
    """

    def __init__(self, config: RLAWorldConfig) -> None:
        self.config = config
        path = resolve_artifacts(config.artifacts, config.suite)
        key = (str(path.resolve()), (path / "manifest.json").stat().st_mtime_ns)
        self.device = torch.device(_pick_device(config.device))
        self.art = _cached_artifacts(*key)
        self.model = _cached_model(*key, str(self.device), config.world_model)
        self.flow_steps = int(config.flow_steps)
        self.model.check_guidance(config.guidance)  # a bad weight fails here, not mid-episode
        self.history = int(getattr(self.model, "history", 0))
        # Flow samples per env per step, shared by the uncertainty and the reward.
        self.num_samples = max(1, config.num_uncertainty_samples, config.reward_samples)
        m = self.art.manifest
        self.chunk, self.action_dim = self.art.chunk, self.art.action_dim
        if self.history not in (0, self.chunk):
            # The env only has chunk-boundary frames: the earlier frame is the previous chunk's.
            raise ValueError(
                f"the world model looks {self.history} control steps back but this bundle's "
                f"chunk is K={self.chunk}; train it with history={self.chunk} (or 0)"
            )
        self.action_mode: ActionMode = config.action_mode
        self.num_tokens, self.feature_dim = int(m["num_tokens"]), int(m["feature_dim"])
        self.max_episode_steps = int(
            config.max_episode_steps
            if config.max_episode_steps is not None
            else self.art.max_episode_steps
        )
        self.reference = torch.from_numpy(self.art.reference).to(self.device)
        self.reference_len = self.art.reference_len
        self.reset_features = torch.from_numpy(self.art.reset_features).to(self.device)
        self.render_pooled = torch.from_numpy(self.art.render_pooled).to(self.device)
        self._key = key
        self.render_backend = self._resolve_render_backend(config.render_backend)
        self._decoder: FrameDecoder | None = None
        if self.render_backend == "decoder" and config.render_mode == "rgb_array":
            self._decoder = _cached_decoder(*key, str(self.device))  # a bad decoder fails here
        low = torch.tensor(m["action_low"], dtype=torch.float32, device=self.device)
        high = torch.tensor(m["action_high"], dtype=torch.float32, device=self.device)
        self._act_mid, self._act_half = (high + low) / 2, (high - low) / 2
        self.reward = AlignedReward(
            self.reference,
            mode="aligned" if config.reward_mode == "progress" else config.reward_mode,
            metric=config.reward_metric,
            scale=config.reward_scale,
            success_threshold=self.art.success_threshold,
        )
        # The learned head, when the bundle ships one, gives the success estimate in every mode
        # (it was trained with start frames and failures as negatives) and the progress reward.
        if config.reward_mode == "progress" or self.art.has_progress_head:
            # Shared by every env on the bundle; without a head this raises, saying how to add one.
            self.progress_head = _cached_progress_head(*key, str(self.device))
        else:
            self.progress_head = None

    # ------------------------------------------------------------------ the bundle
    @property
    def manifest(self) -> dict[str, Any]:
        """The bundle's ``manifest.json``: simulator, task, encoder, resolution, chunk, horizon
        (read-only by convention: it is shared by every env on the same bundle)."""
        return self.art.manifest

    @property
    def bundle_path(self) -> Path:
        """The bundle folder this env dreams from."""
        return self.art.path

    # ------------------------------------------------------------------ spaces
    @property
    def action_space_desc(self) -> str:
        """The action space in words, for error messages."""
        k, a = self.chunk, self.action_dim
        if self.action_mode == "repeat":
            return (
                f"Box(-1.0, 1.0, ({a},), float32): one action of size A={a}, held for the "
                f"K={k} control steps of a chunk"
            )
        return (
            f"Box(-1.0, 1.0, ({k * a},), float32): a chunk of K={k} actions of size A={a}, "
            f"flattened row-major from (K, A)"
        )

    def single_action_space(self) -> spaces.Box:
        """One env's action space: ``(K * A,)`` chunks or ``(A,)`` repeated actions."""
        size = self.action_dim if self.action_mode == "repeat" else self.chunk * self.action_dim
        return spaces.Box(-1.0, 1.0, (size,), np.float32)

    def to_chunks(self, actions: np.ndarray) -> np.ndarray:
        """Validated env actions ``(B, *action_shape)`` -> the chunks ``(B, K*A)`` that
        :meth:`dream` takes: ``repeat`` tiles each ``(A,)`` action ``K`` times."""
        if self.action_mode == "repeat":
            return np.tile(actions, (1, self.chunk))
        return actions

    def single_observation_space(self, obs_mode: ObsMode) -> spaces.Space:
        patch = spaces.Box(-np.inf, np.inf, (self.num_tokens, self.feature_dim), np.float32)
        if obs_mode == "patch":
            return patch
        if obs_mode == "dict":
            pooled = spaces.Box(-np.inf, np.inf, (self.feature_dim,), np.float32)
            return spaces.Dict({"patch": patch, "pooled": pooled})
        raise ValueError(f"obs_mode must be 'patch' or 'dict', got {obs_mode!r}")

    # ------------------------------------------------------------------ reset
    def sample_start(self, rng: np.random.Generator, options: dict[str, Any] | None) -> Start:
        """Draw a start with ``rng`` (the env's ``np_random``).

        Options: ``{"start": "init" | "demo_random", "index": int}``. ``"init"`` (default, or
        ``"demo_random"`` with probability ``RLAWorldConfig.reset_demo_fraction``) picks
        reset-bank entry ``index`` (random if absent); ``"demo_random"`` picks reference demo
        ``index`` (random if absent) and a uniformly random interior row of it;
        ``{"start": "features", "features": (N, D), "demo": int}`` starts from the given
        features (see :meth:`features_start`).
        """
        options = dict(options or {})
        index = options.get("index")
        kind = options.get("start")
        if kind is None:
            # Drawn only when the option is on, so seeded resets stay as they were without it.
            frac = self.config.reset_demo_fraction
            mid = frac > 0 and index is None and rng.random() < frac
            kind = "demo_random" if mid else "init"
        if kind == "features":
            if "features" not in options:
                raise ValueError(
                    "options['start'] == 'features' needs options['features'], "
                    f"an ({self.num_tokens}, {self.feature_dim}) array"
                )
            return self.features_start(
                options["features"], options.get("demo"), options.get("previous_features")
            )
        if kind == "init":
            m = len(self.reset_features)
            i = int(rng.integers(m)) if index is None else int(index)
            if not 0 <= i < m:
                raise ValueError(f"options['index'] must be in [0, {m}) for start='init', got {i}")
            return Start(
                self.reset_features[i],
                int(self.art.reset_demo[i]),
                0,
                "init",
                i,
                int(self.art.reset_init[i]),
            )
        if kind == "demo_random":
            r = self.reward.num_demos
            d = int(rng.integers(r)) if index is None else int(index)
            if not 0 <= d < r:
                raise ValueError(
                    f"options['index'] must be in [0, {r}) for start='demo_random', got {d}"
                )
            # Interior rows only: row 0 is an init start, the last row is already the goal.
            n_rows = int(self.reference_len[d])
            j = int(rng.integers(1, n_rows - 1)) if n_rows > 2 else 0
            prev = self.reference[d, j - 1] if j > 0 else None  # the demo one chunk earlier
            return Start(self.reference[d, j], d, j * self.chunk, "demo_random", j, previous=prev)
        raise ValueError(
            f"options['start'] must be 'init', 'demo_random' or 'features', got {kind!r}"
        )

    def features_start(self, features: Any, demo: int | None = None, previous: Any = None) -> Start:
        """A start at given features, e.g. the encoded first frame of a real episode.

        Args:
            features: ``(N, D)`` features of the bundle's encoder (an observation's shape).
            demo: reference demo the reward aligns with (``None``: the demo whose first frame is
                nearest in mean L1, the rule that aligns the reset bank).
            previous: ``(N, D)`` features one chunk before ``features`` (option
                ``"previous_features"``), read by a world model with history; ``None``: at rest.

        Raises:
            ValueError: wrong shape, non-finite values or a demo index out of range.
        """
        f = self._check_features(features, "features")
        prev = None if previous is None else self._check_features(previous, "previous_features")
        r = self.reward.num_demos
        d = nearest_demo(f, self.art.reference[:, 0]) if demo is None else int(demo)
        if not 0 <= d < r:
            raise ValueError(f"options['demo'] must be in [0, {r}), got {d}")
        previous_t = None if prev is None else torch.from_numpy(prev).to(self.device)
        return Start(torch.from_numpy(f).to(self.device), d, 0, "features", -1, previous=previous_t)

    def _check_features(self, features: Any, name: str) -> np.ndarray:
        f = np.asarray(features, dtype=np.float32)
        if f.shape != (self.num_tokens, self.feature_dim):
            raise ValueError(
                f"options[{name!r}] must have shape ({self.num_tokens}, {self.feature_dim}) "
                f"(one observation of this bundle's encoder), got {f.shape}"
            )
        if not np.all(np.isfinite(f)):
            raise ValueError(f"options[{name!r}] contains NaN or inf")
        return f

    @staticmethod
    def seed_generator(
        gen: torch.Generator, rng: np.random.Generator, extra: torch.Generator | None = None
    ) -> None:
        """Re-seed an env's flow-noise generators from its ``np_random`` (same seed, same noise).

        Args:
            gen: the stream of sample 0, the one the state follows.
            rng: the env's ``np_random``; one number is drawn from it whether or not ``extra``
                is given, so its later draws (the next reset) do not depend on the sample count.
            extra: the stream of samples ``1..M-1`` (see :meth:`sample_next`), seeded from the
                same number through a ``SeedSequence`` so that it is independent of ``gen``.
        """
        seed = int(rng.integers(0, 2**63 - 1))
        gen.manual_seed(seed)
        if extra is not None:
            extra.manual_seed(
                int(np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0])
            )

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def sample_next(
        self,
        s: torch.Tensor,
        actions: np.ndarray,
        generators: list[torch.Generator],
        extra_generators: list[torch.Generator] | None = None,
        s_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``M = max(1, S, R)`` flow samples of the next features of every env, in one batched
        world-model call.

        Sample 0 of env ``i`` is drawn from ``generators[i]`` exactly as a one-sample step draws
        it, and samples ``1..M-1`` from ``extra_generators[i]``: more samples leave sample 0, and
        so every later step, unchanged. (One stream for all ``M`` would also leave the first
        step's sample 0 alone, but then advance by ``M`` draws and change every step after.)

        Args:
            s: ``(B, N, D)`` current features on the core's device.
            actions: ``float32 (B, K*A)`` validated normalised chunks.
            generators: one CPU generator per env (its own noise stream).
            extra_generators: one more per env, for samples ``1..M-1`` (needed when ``M > 1``).
            s_prev: ``(B, N, D)`` features one chunk before ``s`` (read by a world model with
                history, :attr:`history` ``> 0``; ``None``: at rest).

        Returns:
            ``(B, M, N, D)`` next features.

        Raises:
            ValueError: ``M > 1`` without ``extra_generators``.
        """
        b, k, a_dim, m = s.shape[0], self.chunk, self.action_dim, self.num_samples
        act = torch.from_numpy(actions).to(self.device).view(b, k, a_dim)
        raw = self._act_mid + self._act_half * act  # normalised -> simulator units
        # Per-env generators: env i's noise never depends on how many other envs share the batch.
        draws: list[torch.Generator] = list(generators)
        if m > 1:
            if extra_generators is None:
                raise ValueError(
                    f"this env draws {m} flow samples per step (num_uncertainty_samples="
                    f"{self.config.num_uncertainty_samples}, reward_samples="
                    f"{self.config.reward_samples}); pass extra_generators, one per env"
                )
            pairs = zip(generators, extra_generators, strict=True)
            draws = [g for main, extra in pairs for g in (main, *[extra] * (m - 1))]
        return self.model.sample(
            s,
            raw,
            num_samples=m,
            steps=self.flow_steps,
            generator=draws,
            guidance=self.config.guidance,
            s_prev=s_prev,
        )

    def dream(
        self,
        s: torch.Tensor,
        actions: np.ndarray,
        generators: list[torch.Generator],
        extra_generators: list[torch.Generator] | None = None,
        s_prev: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One chunk for every env (see :meth:`sample_next`), without the reward.

        Returns:
            ``(s_next (B, N, D), uncertainty (B,) or None)``: sample 0, and the spread of the
            first ``S`` samples when ``num_uncertainty_samples >= 2``.
        """
        out = self.sample_next(s, actions, generators, extra_generators, s_prev)
        return out[:, 0].contiguous(), self._spread(out)

    def _spread(self, samples: torch.Tensor) -> torch.Tensor | None:
        """``(B, M, N, D)`` -> std of the first ``S`` samples averaged over tokens and channels
        ``(B,)``, or ``None`` with the uncertainty off."""
        n = self.config.num_uncertainty_samples
        return samples[:, :n].std(1).mean(dim=(1, 2)) if n >= 2 else None

    def transition(
        self,
        s: torch.Tensor,
        actions: np.ndarray,
        generators: list[torch.Generator],
        extra_generators: list[torch.Generator] | None,
        demo: torch.Tensor,
        t: np.ndarray,
        s_prev: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray]]:
        """One env step of every env: dream a chunk, then score it (the single and the vector
        env both step through here).

        Args:
            s, actions, generators, extra_generators: as for :meth:`sample_next`.
            demo: ``(B,)`` reference demo of each env.
            t: ``(B,)`` control step the chunk ends on.
            s_prev: as for :meth:`sample_next`.

        Returns:
            ``(s_next (B, N, D), reward (B,), terms)``: sample 0, the mean reward of the first
            ``R`` samples, and its terms (see :meth:`score`) plus ``uncertainty`` when
            ``num_uncertainty_samples >= 2``.
        """
        out = self.sample_next(s, actions, generators, extra_generators, s_prev)
        reward, terms = self.score(out[:, : self.config.reward_samples], demo, t)
        unc = self._spread(out)
        if unc is not None:
            terms["uncertainty"] = unc.cpu().numpy()
        return out[:, 0].contiguous(), reward, terms

    def score(
        self, s_next: torch.Tensor, demo: torch.Tensor, t: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Reward of features reached at control step ``t``.

        Args:
            s_next: ``(B, N, D)`` features, or ``(B, R, N, D)`` samples of them.
            demo: ``(B,)`` reference demo of each row.
            t: ``(B,)`` control steps.

        Returns:
            ``(reward (B,) float64, terms)`` in numpy. With samples, the reward and the float
            terms are means over the ``R`` samples and ``is_success_estimate`` is true when at
            least half the samples are estimated successful.
        """
        b = s_next.shape[0]
        r_samples = s_next.shape[1] if s_next.ndim == 4 else 1
        flat = s_next.reshape(b * r_samples, *s_next.shape[-2:])
        row = torch.from_numpy(np.asarray(t) // self.chunk).repeat_interleave(r_samples)
        r, terms = self.reward(flat, demo.repeat_interleave(r_samples), row)
        if self.progress_head is not None:
            with torch.no_grad():
                progress, logit = self.progress_head(flat)
            terms["progress"] = progress
            terms["is_success_estimate"] = logit > 0
            if self.config.reward_mode == "progress":
                r = self.config.reward_scale * progress

        def per_env(v: torch.Tensor) -> np.ndarray:
            # Mean over each env's samples (exact for one sample); a vote for the boolean terms.
            mean = v.float().reshape(b, r_samples).mean(1)
            return (mean >= 0.5 if v.dtype == torch.bool else mean).cpu().numpy()

        return per_env(r).astype(np.float64), {k: per_env(v) for k, v in terms.items()}

    def observe(self, s: torch.Tensor, obs_mode: ObsMode) -> np.ndarray | dict[str, np.ndarray]:
        """``(B, N, D)`` features -> batched observation(s) in numpy float32."""
        patch = s.float().cpu().numpy()
        if obs_mode == "dict":
            return {"patch": patch, "pooled": patch.mean(1)}
        return patch

    def _resolve_render_backend(self, backend: RenderBackend) -> Literal["decoder", "nearest"]:
        if backend == "nearest" or (backend == "auto" and not self.art.has_decoder):
            return "nearest"
        if not self.art.has_decoder:
            raise ArtifactsNotFoundError(
                f"render_backend='decoder' but the bundle {self.art.path} has no frame decoder; "
                f"add one with `rla-gym add-decoder --bundle {self.art.path} --decoder "
                f"<checkpoint>` or use render_backend='nearest' (or 'auto')"
            )
        return "decoder"

    def render(self, s: torch.Tensor, backend: RenderBackend | None = None) -> np.ndarray:
        """Frames of the states ``(B, N, D)`` -> ``uint8 (B, h, w, 3)``.

        ``"decoder"``: the frame decoder's picture at the dataset resolution; ``"nearest"``: the
        bank's real thumbnail with the closest token-mean features. ``backend`` overrides the
        env's ``render_backend`` for this call (e.g. to show both side by side).
        """
        which = self.render_backend if backend is None else self._resolve_render_backend(backend)
        if which == "nearest":
            return nearest_frames(s, self.render_pooled, self.art.render_frames)
        if self._decoder is None:
            self._decoder = _cached_decoder(*self._key, str(self.device))
        return self._decoder.render(s, fingerprint=self.art.manifest["encoder_fingerprint"])


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
    where ``pooled`` is the token mean.

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
    does not average: it follows sample 0). With ``reward_samples = R >= 2`` the reward and these
    terms are means over ``R`` flow samples of the next state (``is_success_estimate``: their
    majority), a lower-variance estimate of the expected reward; the state still follows sample
    0, so the observations are those of ``R = 1``.

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
    previous row, and ``options["previous_features"]`` gives it for a ``"features"`` start.

    ## Episode End
    Never terminates (success is only an estimate). Truncated after ``max_episode_steps`` env
    steps: the bundle's horizon from its manifest (its reference demos' length in chunks; the
    embedded LIBERO bundle: 17), or the ``max_episode_steps`` option. The env truncates itself,
    so ``gym.make``, ``gym.make_vec`` and direct construction all end episodes at the same step.

    ## Arguments
    ```python
    gym.make("RLAWorld-libero-v0", artifacts=None, device="cpu", flow_steps=10,
             reward_mode="aligned", reward_metric="l1", reward_scale=5.0, obs_mode="patch",
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
      models with a history (``options["previous_features"]``). Since
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
        self.obs_mode: ObsMode = cfg.obs_mode
        self.render_mode = cfg.render_mode
        self.observation_space = self.core.single_observation_space(cfg.obs_mode)
        self.action_space = self.core.single_action_space()
        self._gen = torch.Generator()
        self._extra_gen = torch.Generator()  # flow samples 1.. (uncertainty, reward samples)
        self._s: torch.Tensor | None = None
        self._prev: torch.Tensor | None = None  # one chunk earlier, for a model with history
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
        obs = self.core.observe(self._s[None], self.obs_mode)
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
        s_next, reward, terms = self.core.transition(
            self._s[None],
            self.core.to_chunks(a[None]),
            [self._gen],
            [self._extra_gen],
            self._demo,
            np.array([t]),
            None if self._prev is None else self._prev[None],
        )
        self._prev, self._s, self._t = self._s, s_next[0], t
        self._elapsed += 1
        info: dict[str, Any] = {
            "reward_l1": float(terms["reward_l1"][0]),
            "dist_to_goal": float(terms["dist_to_goal"][0]),
            "is_success_estimate": bool(terms["is_success_estimate"][0]),
            "t": self._t,
            "demo": int(self._demo[0]),
        }
        if "progress" in terms:
            info["progress"] = float(terms["progress"][0])
        if "uncertainty" in terms:
            info["uncertainty"] = float(terms["uncertainty"][0])
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
