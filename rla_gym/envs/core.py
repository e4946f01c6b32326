"""``DreamCore``: bank, world model and reward of a bundle, stepping a batch of dreamed envs.

The single env (:mod:`rla_gym.envs.rla_world`) and the native vector env
(:mod:`rla_gym.envs.vector`) are thin shells around it, which is what makes "vector env == N
single envs" hold by construction. Bundles, models and decoders are cached per bundle, so many
envs on one bundle share one copy. Where episodes start is :mod:`rla_gym.envs.starts`; the
robot's body, for a world model that dreams it, follows the rules of :mod:`rla_gym.envs.body`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from gymnasium import spaces

from rla_gym.envs import body as _body
from rla_gym.envs.artifacts import (
    Artifacts,
    ArtifactsNotFoundError,
    load_artifacts,
    resolve_artifacts,
)
from rla_gym.envs.config import (
    ActionMode,
    ObsMode,
    RenderBackend,
    RLAWorldConfig,
    pick_device,
)
from rla_gym.envs.render import nearest_frames
from rla_gym.envs.starts import Start, StartBank
from rla_gym.reward.aligned import AlignedReward
from rla_gym.world_model.baselines import Predictor

if TYPE_CHECKING:
    from rla_gym.decoder import FrameDecoder

__all__ = ["TRUSTED_DREAM_CALIBRATION", "DreamCore", "Start", "auto_success_estimate"]


# --------------------------------------------------------------------------- per-bundle caches


@functools.lru_cache(maxsize=8)
def _cached_artifacts(path: str, mtime_ns: int) -> Artifacts:
    # Keyed on the manifest's mtime so a rebuilt bundle is picked up; many envs share one copy.
    return load_artifacts(path)


@functools.lru_cache(maxsize=8)
def _cached_model(path: str, mtime_ns: int, device: str, checkpoint: str | None) -> Predictor:
    return _cached_artifacts(path, mtime_ns).load_world_model(device, checkpoint)


TRUSTED_DREAM_CALIBRATION = 0.85
"""``success_estimate="auto"`` reads the goal distance when its threshold separated the dreamed
replays it was calibrated on at least this well (balanced accuracy): LIBERO 0.95 and Lift 0.90
do, reacher's 0.72 does not, and keeps its head. Chosen knowing the closed-loop numbers of both
estimates (``benchmarks/closed_loop.py`` shows both), so those are not a blind test of it."""


def auto_success_estimate(art: Artifacts) -> Literal["goal_distance", "progress_head"]:
    """The estimate ``success_estimate="auto"`` reads on a bundle: the goal distance when its
    threshold was calibrated on dreamed replays to ``TRUSTED_DREAM_CALIBRATION`` or the bundle
    has no head, else the head."""
    calibration = art.manifest.get("success", {})
    trusted = calibration.get("train_balanced_accuracy", 0.0) >= TRUSTED_DREAM_CALIBRATION
    if art.has_progress_head and not (art.success_threshold is not None and trusted):
        return "progress_head"
    return "goal_distance"


@functools.lru_cache(maxsize=8)
def _cached_progress_head(path: str, mtime_ns: int, device: str) -> Any:
    return _cached_artifacts(path, mtime_ns).load_progress_head(device)


@functools.lru_cache(maxsize=8)
def _cached_decoder(path: str, mtime_ns: int, device: str) -> FrameDecoder:
    return _cached_artifacts(path, mtime_ns).load_decoder(device)


# --------------------------------------------------------------------------- batched core
class DreamCore:
    """Bank, world model and reward of a bundle, operating on batches of environments.

    Args:
        config: the env options (see :class:`RLAWorldConfig`).
    """

    def __init__(self, config: RLAWorldConfig) -> None:
        self.config = config
        path = resolve_artifacts(config.artifacts, config.suite)
        key = (str(path.resolve()), (path / "manifest.json").stat().st_mtime_ns)
        self.device = torch.device(pick_device(config.device))
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
        # The body the world model dreams (load_world_model checked the bank carries it).
        self.body_fields: tuple[str, ...] = tuple(getattr(self.model, "proprio_fields", ()))
        self.body_dim = len(self.body_fields)
        self.starts = StartBank(
            self.art,
            self.device,
            self.body_fields,
            config.reset_demo_fraction,
            config.reset_starts,
        )
        self.reference, self.reference_len = self.starts.reference, self.starts.reference_len
        self.body_model = self._body_model(config.body_dynamics)
        self.reset_features = self.starts.reset_features
        if config.reward_proprio_weight > 0 and not self.body_fields:
            raise ValueError(
                f"reward_proprio_weight={config.reward_proprio_weight} needs a bundle whose world "
                f"model dreams the robot's body; {self.art.path} dreams features only"
            )
        self.obs_mode = _body.resolve_obs_mode(config.obs_mode, self.body_fields, path)
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
        # The learned head, when the bundle ships one, reports progress in every mode; it pays
        # the progress reward and gives the success estimate where config.success_estimate says.
        needs_head = config.reward_mode == "progress" or config.success_estimate == "progress_head"
        if needs_head or self.art.has_progress_head:
            # Shared by every env on the bundle; without a head this raises, saying how to add one.
            self.progress_head = _cached_progress_head(*key, str(self.device))
        else:
            self.progress_head = None
        self.head_reads_body = _body.head_reads_body(self.progress_head, self.body_fields, path)
        if config.success_estimate == "goal_distance" and self.art.success_threshold is None:
            raise ValueError(
                f"success_estimate='goal_distance' but the bundle {self.art.path} has no "
                "calibrated goal-distance threshold (manifest.json 'success'); rebuild it with "
                "build-bundle, or use success_estimate='progress_head'"
            )
        # Which estimate info["is_success_estimate"] carries (see RLAWorldConfig.success_estimate).
        source = config.success_estimate
        self.success_from_head = (
            auto_success_estimate(self.art) if source == "auto" else source
        ) == "progress_head"

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

    def single_observation_space(self, obs_mode: ObsMode | None = None) -> spaces.Space:
        """One env's observation space (``obs_mode``: the env's own, :attr:`obs_mode`, if
        ``None``; ``"auto"`` resolves as the option does, see :mod:`rla_gym.envs.body`)."""
        mode = self.resolve_obs_mode(obs_mode)
        return _body.observation_space(mode, self.num_tokens, self.feature_dim, self.body_dim)

    def _body_model(self, source: str) -> torch.nn.Module | None:
        """The bundle's body dynamics when ``source`` picks it (see
        ``RLAWorldConfig.body_dynamics``), else ``None`` (the world model's body head).

        Raises:
            ValueError: ``body_model`` on a dream without a body or a bundle without one.
        """
        if source == "world_model" or (source == "auto" and not self.art.has_body_model):
            return None
        if not self.body_fields:
            raise ValueError(
                f"body_dynamics={source!r}: the world model of {self.art.path} dreams features "
                "only; there is no body to move"
            )
        model = self.art.load_body_model(str(self.device))  # names how to add one if missing
        if model.config.proprio_fields != self.body_fields:
            raise ValueError(
                f"the body model of {self.art.path} reads {model.config.proprio_fields}, its "
                f"world model dreams {self.body_fields}"
            )
        return model.requires_grad_(False)  # stepped like the world model, never trained here

    def resolve_obs_mode(self, obs_mode: ObsMode | None = None) -> _body.ResolvedObsMode:
        """``obs_mode`` (``None``: the config's) with ``"auto"`` resolved for this bundle.

        Raises:
            ValueError: ``"features+proprio"`` on a bundle whose world model dreams no body.
        """
        if obs_mode is None:
            return self.obs_mode
        return _body.resolve_obs_mode(obs_mode, self.body_fields, self.art.path)

    # ------------------------------------------------------------------ reset
    def sample_start(self, rng: np.random.Generator, options: dict[str, Any] | None) -> Start:
        """Draw a start with ``rng`` (the env's ``np_random``); see :meth:`StartBank.sample`."""
        return self.starts.sample(rng, options)

    def features_start(
        self, features: Any, demo: int | None = None, previous: Any = None, proprio: Any = None
    ) -> Start:
        """A start at given features; see :meth:`StartBank.from_features`."""
        return self.starts.from_features(features, demo, previous, proprio)

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
        body: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``M = max(1, S, R)`` flow samples of the next features of every env, in one batched
        world-model call, and the next body.

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
            body: ``(B, P)`` current body vectors; required when the world model dreams the
                body (:attr:`body_fields`), refused when it does not.

        Returns:
            ``(B, M, N, D)`` next features and ``(B, P)`` the next body (``None`` for a
            features-only world model; the body head is deterministic: one per env).

        Raises:
            ValueError: ``M > 1`` without ``extra_generators``; a missing, refused or malformed
                ``body`` (the message names the fields).
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
        kw: dict[str, Any] = {
            "num_samples": m,
            "steps": self.flow_steps,
            "generator": draws,
            "guidance": self.config.guidance,
            "s_prev": s_prev,
        }
        if self.body_fields:
            # The model names the body's fields if it is missing or malformed.
            out, body_next = self.model.sample_state(s, raw, proprio=body, **kw)  # type: ignore[attr-defined]
            if self.body_model is not None:
                body_next = self.body_model(body, raw)
            return out, body_next
        if body is not None:
            raise ValueError(
                "a body (B, P) was given but this world model dreams features only "
                "(no proprio_fields); pass body=None"
            )
        return self.model.sample(s, raw, **kw), None

    def dream(
        self,
        s: torch.Tensor,
        actions: np.ndarray,
        generators: list[torch.Generator],
        extra_generators: list[torch.Generator] | None = None,
        s_prev: torch.Tensor | None = None,
        body: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One chunk for every env (see :meth:`sample_next`), without the reward.

        Returns:
            ``(s_next (B, N, D), uncertainty (B,) or None, body_next (B, P) or None)``: sample
            0, the spread of the first ``S`` samples when ``num_uncertainty_samples >= 2``, and
            the next body (``None`` for a features-only world model).
        """
        out, body_next = self.sample_next(s, actions, generators, extra_generators, s_prev, body)
        return out[:, 0].contiguous(), self._spread(out), body_next

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
        body: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray], torch.Tensor | None]:
        """One env step of every env: dream a chunk, then score it (the single and the vector
        env both step through here).

        Args:
            s, actions, generators, extra_generators: as for :meth:`sample_next`.
            demo: ``(B,)`` reference demo of each env.
            t: ``(B,)`` control step the chunk ends on.
            s_prev, body: as for :meth:`sample_next`.

        Returns:
            ``(s_next (B, N, D), reward (B,), terms, body_next (B, P) or None)``: sample 0, the
            mean reward of the first ``R`` samples, and its terms (see :meth:`score`) plus
            ``uncertainty`` when ``num_uncertainty_samples >= 2``, and the next body.
        """
        out, body_next = self.sample_next(s, actions, generators, extra_generators, s_prev, body)
        reward, terms = self.score(out[:, : self.config.reward_samples], demo, t, body_next)
        unc = self._spread(out)
        if unc is not None:
            terms["uncertainty"] = unc.cpu().numpy()
            reward = reward - self.config.uncertainty_penalty * terms["uncertainty"]
        return out[:, 0].contiguous(), reward, terms, body_next

    def score(
        self,
        s_next: torch.Tensor,
        demo: torch.Tensor,
        t: np.ndarray,
        body: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Reward of features reached at control step ``t``.

        Args:
            s_next: ``(B, N, D)`` features, or ``(B, R, N, D)`` samples of them.
            demo: ``(B,)`` reference demo of each row.
            t: ``(B,)`` control steps.
            body: ``(B, P)`` the body reached (one per row, shared by its samples); read by a
                progress head with ``proprio_fields`` and required then, ignored otherwise.

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
            head_in: tuple[torch.Tensor, ...] = (flat,)
            if self.head_reads_body:
                if body is None:
                    raise ValueError(
                        "this bundle's progress head reads the robot's body: score(..., body=) "
                        f"needs the ({b}, {self.body_dim}) body reached"
                    )
                head_in = (flat, body.to(flat.device).repeat_interleave(r_samples, 0))
            with torch.no_grad():
                progress, logit = self.progress_head(*head_in)
            terms["progress"] = progress
            if self.success_from_head:
                terms["is_success_estimate"] = logit > 0
            if self.config.reward_mode == "progress":
                r = self.config.reward_scale * progress
        w = self.config.reward_proprio_weight
        if w > 0 and self.config.reward_mode != "progress":
            if body is None:
                raise ValueError(f"reward_proprio_weight > 0: score(..., body=) needs ({b}, P)")
            gap = self.body_gap(body, demo, np.asarray(t) // self.chunk)
            terms["body_gap"] = gap.repeat_interleave(r_samples)
            r = r - self.config.reward_scale * w * terms["body_gap"].to(r.device, r.dtype)

        def per_env(v: torch.Tensor) -> np.ndarray:
            # Mean over each env's samples (exact for one sample); a vote for the boolean terms.
            mean = v.float().reshape(b, r_samples).mean(1)
            return (mean >= 0.5 if v.dtype == torch.bool else mean).cpu().numpy()

        return per_env(r).astype(np.float64), {k: per_env(v) for k, v in terms.items()}

    def body_gap(self, body: torch.Tensor, demo: torch.Tensor, row: np.ndarray) -> torch.Tensor:
        """Mean absolute difference ``(B,)`` of the standardised body ``(B, P)`` to the reference
        demo's body at the row the reward compares with (:meth:`AlignedReward.target_rows`)."""
        ref_body = self.starts.reference_body
        assert ref_body is not None  # reward_proprio_weight > 0 needs a body bundle (__init__)
        rows = self.reward.target_rows(torch.as_tensor(row)).to(ref_body.device)
        ref = ref_body[demo.to(ref_body.device).long(), rows]
        std = self.model.proprio_std  # type: ignore[union-attr]
        return ((body.to(ref.device).float() - ref) / std.to(ref.device)).abs().mean(1)

    def observe(
        self, s: torch.Tensor, obs_mode: ObsMode | None = None, body: torch.Tensor | None = None
    ) -> np.ndarray | dict[str, np.ndarray]:
        """``(B, N, D)`` features and ``(B, P)`` bodies -> batched observation(s) in numpy
        float32 (``obs_mode``: as for :meth:`single_observation_space`)."""
        return _body.observe(s, self.resolve_obs_mode(obs_mode), body)

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
