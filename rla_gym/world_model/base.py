"""The API every feature-space world model shares, and the strict weight loading they all use.

:class:`FeatureWorldModel` checks inputs, standardises actions and turns one method of its
subclass, ``_predict_samples`` (checked ``s_t (B, N, D)`` and actions ``(B, h, A)`` ->
``(B, S, N, D)`` samples), into ``sample``, ``predict``, ``predict_with_uncertainty`` and
``rollout``. RLA-WM (:mod:`rla_gym.world_model.model`) and the baselines
(:mod:`rla_gym.world_model.baselines`) are its subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from rla_gym.errors import CorruptFileError

__all__ = ["FeatureWorldModel", "Generators", "load_state_strict"]


Generators = torch.Generator | Sequence[torch.Generator]
"""One generator for the whole batch, one per batch row, or one per draw (see
:func:`~rla_gym.flow.noise_for_rows`)."""


def _default_generator(generator: Generators | None) -> Generators:
    if generator is not None:
        return generator
    g = torch.Generator()
    g.seed()  # fresh OS entropy: callers who want determinism pass their own generator
    return g


# --------------------------------------------------------------------------- common API
class FeatureWorldModel(nn.Module):
    """Shared input checks, action normalisation, rollout and uncertainty of feature-space WMs.

    Subclasses implement :meth:`_predict_samples` and set ``num_tokens``, ``feature_dim``,
    ``action_dim``, ``max_horizon`` and ``encoder_fingerprint``.
    """

    MODEL_TYPE: ClassVar[str] = ""
    """``config.json`` type of the subclass's checkpoints (also its ``train-wm --model`` name)."""
    num_tokens: int
    feature_dim: int
    action_dim: int
    max_horizon: int
    encoder_fingerprint: str
    history: int = 0
    """Control steps back to the earlier frame ``s_prev`` the model is conditioned on (``0``:
    Markov in ``s_t``; ``s_prev`` is then ignored)."""
    proprio_fields: tuple[str, ...] = ()
    """Names of the body vector (:mod:`rla_gym.data.proprio`) the model also dreams: its
    predictions are conditioned on the current proprio and return the next one. Empty: the model
    dreams features only."""

    @property
    def proprio_dim(self) -> int:
        """``P``: size of the dreamed body vector (0: features only)."""
        return len(self.proprio_fields)

    def _init_action_stats(self, action_dim: int) -> None:
        # Actions of different robots/sims span very different ranges; standardising them with
        # training statistics keeps the GRU inputs O(1). Identity until fit_normalization runs.
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))

    # ------------------------------------------------------------------ validation
    def check_inputs(
        self, s_t: torch.Tensor, actions: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate and move inputs; returns ``(s_t, actions, lengths)`` on the model's device.

        Args:
            s_t: ``(B, N, D)`` features.
            actions: ``(B, h, A)`` one chunk per row, or ``(B, L, A)`` zero-padded with ``lengths``.
            lengths: optional ``(B,)`` chunk lengths in ``[1, min(L, H_max)]``.

        Raises:
            ValueError: wrong shapes, chunk longer than ``H_max``, non-finite values.
        """
        n, d, a, hmax = self.num_tokens, self.feature_dim, self.action_dim, self.max_horizon
        if not isinstance(s_t, torch.Tensor) or s_t.ndim != 3 or tuple(s_t.shape[1:]) != (n, d):
            got = tuple(s_t.shape) if isinstance(s_t, torch.Tensor) else type(s_t).__name__
            raise ValueError(f"s_t must have shape (B, {n}, {d}) (B, tokens, channels), got {got}")
        if not isinstance(actions, torch.Tensor) or actions.ndim != 3 or actions.shape[2] != a:
            got = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions)
            raise ValueError(
                f"actions must have shape (B, h, {a}) with 1 <= h <= {hmax}, got {got}"
            )
        if actions.shape[0] != s_t.shape[0]:
            raise ValueError(
                f"s_t has batch {s_t.shape[0]} but actions have batch {actions.shape[0]}; "
                f"expected actions of shape ({s_t.shape[0]}, h, {a})"
            )
        b, length = actions.shape[:2]
        if lengths is None:
            if not 1 <= length <= hmax:
                raise ValueError(
                    f"action chunk has {length} steps but this model accepts 1..{hmax} "
                    f"(actions of shape (B, h<={hmax}, {a})); split longer chunks and use rollout()"
                )
            lengths = torch.full((b,), length, dtype=torch.int64)
        else:
            lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
            if lengths.shape != (b,):
                raise ValueError(f"lengths must have shape ({b},), got {tuple(lengths.shape)}")
            if (lengths < 1).any() or (lengths > min(length, hmax)).any():
                raise ValueError(
                    f"lengths must lie in [1, {min(length, hmax)}] (H_max={hmax}, padded length "
                    f"{length}), got {lengths.tolist()}"
                )
            # The padding beyond max(lengths) is never read; drop it so wider paddings work.
            actions = actions[:, : int(lengths.max())]
        if not torch.isfinite(s_t).all():
            raise ValueError(f"s_t (B, {n}, {d}) contains NaN or inf")
        if not torch.isfinite(actions).all():
            raise ValueError(f"actions (B, h, {a}) contain NaN or inf")
        dev = self._device()
        return s_t.to(dev, torch.float32), actions.to(dev, torch.float32), lengths.to(dev)

    def check_previous(self, s_t: torch.Tensor, s_prev: torch.Tensor | None) -> torch.Tensor | None:
        """Validate the earlier frame of a history model; ``None`` for Markov models.

        Args:
            s_t: ``(B, N, D)`` checked current features (on the model's device).
            s_prev: ``(B, N, D)`` features ``history`` control steps earlier, or ``None``: the
                state at rest (``s_prev = s_t``, an episode's first frame).
        """
        if self.history == 0:
            return None
        if s_prev is None:
            return s_t
        if not isinstance(s_prev, torch.Tensor) or tuple(s_prev.shape) != tuple(s_t.shape):
            got = tuple(s_prev.shape) if isinstance(s_prev, torch.Tensor) else type(s_prev)
            raise ValueError(f"s_prev must have the shape of s_t {tuple(s_t.shape)}, got {got}")
        if not torch.isfinite(s_prev).all():
            raise ValueError("s_prev contains NaN or inf")
        return s_prev.to(s_t.device, torch.float32)

    def check_proprio(self, s_t: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor | None:
        """Validate the current body vector; ``None`` for models without a body.

        Args:
            s_t: ``(B, N, D)`` checked features (on the model's device).
            proprio: ``(B, P)`` body vectors in :attr:`proprio_fields` order.

        Raises:
            ValueError: a body model without ``proprio``, a features-only model given one, a
                wrong shape or non-finite values; the message names the expected fields.
        """
        names = ", ".join(self.proprio_fields)
        if not self.proprio_fields:
            if proprio is not None:
                raise ValueError(
                    f"{type(self).__name__} dreams features only (trained without proprio); "
                    "do not pass proprio, or train a body model (train-wm --proprio)"
                )
            return None
        if proprio is None:
            raise ValueError(
                f"this world model dreams the robot's body too: pass proprio of shape "
                f"(B, {self.proprio_dim}) ({names})"
            )
        p = torch.as_tensor(proprio)
        if p.ndim != 2 or tuple(p.shape) != (s_t.shape[0], self.proprio_dim):
            raise ValueError(
                f"proprio must have shape ({s_t.shape[0]}, {self.proprio_dim}) ({names}), "
                f"got {tuple(p.shape)}"
            )
        if not torch.isfinite(p).all():
            raise ValueError(f"proprio contains NaN or inf; expected finite ({names})")
        return p.to(s_t.device, torch.float32)

    def _device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def normalize_actions(self, actions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Standardise ``(B, L, A)`` actions and re-zero the padding beyond ``lengths``."""
        x = (actions - self.action_mean) / self.action_std
        mask = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
        return x * mask[..., None]

    # ------------------------------------------------------------------ prediction
    def _predict_samples(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        *,
        steps: int | None,
        generator: Generators,
        method: str,
        num_samples: int,
        guidance: float = 1.0,
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Checked inputs -> ``(B, S, N, D)`` predictions (``S = num_samples``) and the next body
        vector ``(B, P)`` (``None`` without a body); ``s_prev`` and ``proprio`` are
        :meth:`check_previous`'s and :meth:`check_proprio`'s results."""
        raise NotImplementedError

    def check_guidance(self, guidance: float) -> None:
        """Raise ``ValueError`` unless ``guidance`` can be used (here: only ``1``)."""
        if guidance != 1.0:
            raise ValueError(
                f"guidance={guidance}: {type(self).__name__} has no action-free prediction to "
                "guide with; only RLA-WM trained with action_dropout > 0 supports guidance != 1"
            )

    @torch.no_grad()
    def sample_state(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        proprio: torch.Tensor | None = None,
        num_samples: int = 1,
        steps: int | None = None,
        generator: Generators | None = None,
        method: str = "euler",
        guidance: float = 1.0,
        s_prev: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``S`` samples of ``s_{t+h}`` per row and the next body vector: the one sampler every
        caller goes through.

        Args:
            s_t: ``(B, N, D)`` current features.
            actions: ``(B, h, A)`` chunk, or ``(B, L, A)`` zero-padded together with ``lengths``.
            lengths: optional ``(B,)`` true chunk lengths (``h <= H_max``).
            proprio: ``(B, P)`` current body vectors (models with :attr:`proprio_fields`; must
                be ``None`` for the others).
            num_samples: ``S >= 1`` draws per row.
            steps: solver steps (flow models; default ``config.default_flow_steps``).
            generator: one generator for the batch, one per row (row ``i``'s noise then
                depends on ``generator[i]`` only) or one per draw (``B * S``, sample-major);
                equal generator states -> identical output.
            method: ``"euler"`` or ``"midpoint"``.
            guidance: classifier-free guidance weight over the action (``1``: off); see
                :meth:`check_guidance`.
            s_prev: ``(B, N, D)`` features ``history`` control steps before ``s_t`` (history
                models; ``None``: at rest). Ignored when ``history == 0``.

        Returns:
            ``(B, S, N, D)`` predicted features (deterministic models repeat one prediction) and
            ``(B, P)`` the predicted next body vector (``None`` for features-only models; the
            body head is deterministic, so one per row).
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.check_guidance(guidance)
        s_t, actions, lengths = self.check_inputs(s_t, actions, lengths)
        return self._predict_samples(
            s_t,
            actions,
            lengths,
            steps=steps,
            generator=_default_generator(generator),
            method=method,
            num_samples=num_samples,
            guidance=guidance,
            s_prev=self.check_previous(s_t, s_prev),
            proprio=self.check_proprio(s_t, proprio),
        )

    @torch.no_grad()
    def sample(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        num_samples: int = 1,
        steps: int | None = None,
        generator: Generators | None = None,
        method: str = "euler",
        guidance: float = 1.0,
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The features of :meth:`sample_state`: ``(B, S, N, D)``."""
        return self.sample_state(
            s_t,
            actions,
            lengths,
            proprio=proprio,
            num_samples=num_samples,
            steps=steps,
            generator=generator,
            method=method,
            guidance=guidance,
            s_prev=s_prev,
        )[0]

    @torch.no_grad()
    def predict(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        steps: int | None = None,
        generator: Generators | None = None,
        method: str = "euler",
        num_samples: int = 1,
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ``s_{t+h}``.

        Args:
            s_t: ``(B, N, D)`` current features.
            actions: ``(B, h, A)`` chunk, or ``(B, L, A)`` zero-padded together with ``lengths``.
            lengths: optional ``(B,)`` true chunk lengths (``h <= H_max``).
            steps: solver steps (flow models; default ``config.default_flow_steps``).
            generator: seeds the noise; equal generator state -> identical output.
            method: ``"euler"`` or ``"midpoint"``.
            num_samples: with ``S > 1``, the mean of ``S`` samples is returned (use
                :meth:`predict_with_uncertainty` to also get their spread).
            s_prev, proprio: as in :meth:`sample_state`.

        Returns:
            ``(B, N, D)`` predicted features.
        """
        out = self.sample(
            s_t,
            actions,
            lengths,
            num_samples=num_samples,
            steps=steps,
            generator=generator,
            method=method,
            s_prev=s_prev,
            proprio=proprio,
        )
        return out.mean(1) if num_samples > 1 else out[:, 0]

    @torch.no_grad()
    def predict_with_uncertainty(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        num_samples: int = 4,
        steps: int | None = None,
        generator: Generators | None = None,
        method: str = "euler",
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean prediction and an epistemic/aleatoric spread estimate from ``S`` samples.

        Returns:
            ``(mean (B, N, D), uncertainty (B,))`` where uncertainty is the standard deviation
            across samples averaged over tokens and channels (0 for deterministic models).
        """
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 to measure a spread, got {num_samples}")
        out = self.sample(
            s_t,
            actions,
            lengths,
            num_samples=num_samples,
            steps=steps,
            generator=generator,
            method=method,
            s_prev=s_prev,
            proprio=proprio,
        )
        return out.mean(1), out.std(1).mean(dim=(1, 2))

    @torch.no_grad()
    def rollout(
        self,
        s_0: torch.Tensor,
        chunks: Sequence[torch.Tensor],
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        method: str = "euler",
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Autoregressive rollout: each prediction is fed back as the next ``s_t`` directly.

        No decode/re-encode through the image encoder (as in the paper): the model works in
        feature space throughout. A history model sees the previous chunk's start as its earlier
        frame (exact when every chunk has ``history`` steps, as in the dreamed env). A body
        model feeds its predicted body vector back too.

        Args:
            s_0: ``(B, N, D)`` start features.
            chunks: action chunks ``(B, h_i, A)`` with ``1 <= h_i <= H_max``.
            steps, generator, method: as in :meth:`predict`.
            s_prev: the frame before ``s_0`` (history models; ``None``: at rest).
            proprio: ``(B, P)`` start body vectors (body models only).

        Returns:
            ``(B, len(chunks), N, D)``: the features after each chunk; for a body model the
            tuple of those and ``(B, len(chunks), P)``, the body after each chunk.
        """
        if len(chunks) == 0:
            raise ValueError("rollout needs at least one action chunk")
        g = _default_generator(generator)
        s, prev, body, outs, bodies = s_0, s_prev, proprio, [], []
        for chunk in chunks:
            nxt, body = self.sample_state(
                s, chunk, steps=steps, generator=g, method=method, s_prev=prev, proprio=body
            )
            s, prev = nxt[:, 0], s
            outs.append(s)
            bodies.append(body)
        feats = torch.stack(outs, dim=1)
        return feats if body is None else (feats, torch.stack(bodies, dim=1))

    # ------------------------------------------------------------------ persistence helpers
    def _fit_action_stats(self, actions: torch.Tensor) -> None:
        """Set action mean/std from unpadded ``(M, A)`` training actions."""
        std = actions.std(0, unbiased=False) if len(actions) > 1 else torch.ones_like(actions[0])
        self.action_mean.copy_(actions.mean(0))
        # A constant action dimension (e.g. an unused gripper) must not divide by ~0.
        self.action_std.copy_(std.clamp_min(1e-3))


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path | None) -> None:
    """Strict load that turns key/shape mismatches into :class:`CorruptFileError`."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CorruptFileError(
            f"weights in {path} do not match its config.json ({str(err)[:300]}); the folder mixes "
            f"files of different models — re-train or re-save it"
        ) from err
