"""The dream half of the counterfactual measurement: every model rolls out from the encoded real
starts with the same actions (step 3 of :mod:`rla_gym.evaluation.counterfactual`), and its
outcomes are scored against the real ones; the RLA ceiling beside it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rla_gym.evaluation.counterfactual.config import CounterfactualConfig
from rla_gym.evaluation.counterfactual.metrics import outcome_metrics
from rla_gym.evaluation.counterfactual.reality import RealOutcomes

__all__ = [
    "DreamStep",
    "dream_outcomes",
    "rla_ceiling_outcomes",
    "score_models",
    "score_rla_ceiling",
    "start_noise_seeds",
]

# One dreamed chunk: features (B, N, D), normalised chunks (B, K * A), a generator per row, the
# features one chunk earlier (B, N, D) -> features (B, N, D).
DreamStep = Callable[[torch.Tensor, np.ndarray, list[torch.Generator], torch.Tensor], torch.Tensor]


def start_noise_seeds(cfg: CounterfactualConfig, starts: int) -> np.ndarray:
    """The flow-noise seed of every real start (its ``M`` outcomes share it): ``int64 (S,)``."""
    return np.array([cfg.seed * 1_000_003 + i for i in range(starts)], dtype=np.int64)


@torch.no_grad()
def dream_outcomes(
    step: DreamStep,
    start: np.ndarray,
    sequences: np.ndarray,
    chunk: int,
    horizons: Sequence[int],
    noise_seeds: np.ndarray,
    batch_size: int = 64,
    previous: np.ndarray | None = None,
    body: np.ndarray | None = None,
    bodies_out: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Roll a world model out from every start with every sequence, chunk by chunk.

    Args:
        step: one dreamed chunk (the env's ``DreamCore.dream`` or a baseline's ``predict``),
            called as ``step(s, actions, generators, s_prev)`` (``s_prev``: the state one chunk
            earlier, for world models with history).
        start: ``(S, N, D)`` encoded real start states.
        sequences: ``float32 (S, M, H * K, A)`` normalised actions.
        chunk: ``K``.
        horizons: chunk counts at which the dreamed state is kept.
        noise_seeds: ``(S,)`` flow-noise seed of every start; its ``M`` rows share it.
        batch_size: rows per world-model call.
        previous: ``(S, N, D)`` encoded real frames one chunk before the starts (``None``: at
            rest, the start stands in).
        body: ``(S, P)`` the real starts' body vectors, for a world model that dreams the body;
            ``step`` is then called as ``step(s, actions, generators, s_prev, body)`` and
            returns ``(s_next, body_next)``.
        bodies_out: with ``body``, receives the dreamed bodies ``float32 (S, M, len(horizons),
            P)`` at the kept horizons.

    Returns:
        ``float32 (S, M, len(horizons), N, D)``.
    """
    s, m = sequences.shape[:2]
    n_rows = s * m
    max_h = max(horizons)
    keep = {h: i for i, h in enumerate(horizons)}
    flat_seq = sequences.reshape(n_rows, -1, sequences.shape[-1])
    flat_start = np.repeat(start, m, axis=0)
    flat_prev = flat_start if previous is None else np.repeat(previous, m, axis=0)
    seeds = np.repeat(np.asarray(noise_seeds), m)
    flat_body = None if body is None else np.repeat(body, m, axis=0)
    out = np.zeros((n_rows, len(horizons), *start.shape[1:]), np.float32)
    out_body = (
        None if body is None else np.zeros((n_rows, len(horizons), body.shape[1]), np.float32)
    )
    for b0 in range(0, n_rows, batch_size):
        rows = slice(b0, min(b0 + batch_size, n_rows))
        gens = [torch.Generator().manual_seed(int(x)) for x in seeds[rows]]
        state = torch.from_numpy(flat_start[rows]).float()
        prev = torch.from_numpy(flat_prev[rows]).float()
        bod = None if flat_body is None else torch.from_numpy(flat_body[rows]).float()
        for h in range(1, max_h + 1):
            acts = np.ascontiguousarray(
                flat_seq[rows, (h - 1) * chunk : h * chunk].reshape(len(gens), -1), np.float32
            )
            if bod is None:
                nxt = step(state, acts, gens, prev)
            else:
                nxt, bod = step(state, acts, gens, prev, bod)  # type: ignore[call-arg,misc]
            state, prev = nxt, state
            if h in keep:
                out[rows, keep[h]] = state.float().cpu().numpy()
                if out_body is not None and bod is not None:
                    out_body[rows, keep[h]] = bod.float().cpu().numpy()
    if bodies_out is not None and out_body is not None:
        bodies_out.append(out_body.reshape(s, m, len(horizons), -1))
    return out.reshape(s, m, len(horizons), *start.shape[1:])


@torch.no_grad()
def rla_ceiling_outcomes(
    rla: Any, start: np.ndarray, real: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """The RLA decoding the true latent of every real outcome: ``decode(s, encode(s, real))``.

    Args:
        rla: an RLA autoencoder (``encode``/``decode``).
        start: ``(S, N, D)``.
        real: ``(S, M, N, D)`` real outcomes.

    Returns:
        ``float32 (S, M, N, D)``.
    """
    s, m = real.shape[:2]
    s_t = torch.from_numpy(np.repeat(start, m, axis=0)).float()
    s_th = torch.from_numpy(real.reshape(s * m, *real.shape[2:])).float()
    out = [
        rla.decode(
            s_t[i : i + batch_size], rla.encode(s_t[i : i + batch_size], s_th[i : i + batch_size])
        )
        for i in range(0, s * m, batch_size)
    ]
    return torch.cat(out).cpu().numpy().reshape(real.shape)


def score_models(
    outcomes: RealOutcomes,
    cfg: CounterfactualConfig,
    models: dict[str, dict[str, Any]],
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Dream the same starts and sequences with every model and score them (protocol step 3).

    Args:
        outcomes: :func:`measure_real`'s result.
        cfg: the measurement's config (flow steps, seed, batch size).
        models: name -> options of the dreamed env (:class:`~rla_gym.envs.RLAWorldConfig`
            fields, e.g. ``{}`` for the bundle's own model, ``{"world_model": ckpt}`` for another
            checkpoint, ``{"world_model": ckpt, "guidance": 2.0}``). Every model dreams through
            the env's own :meth:`DreamCore.dream`, so action scaling and noise are the env's.

    Returns:
        name -> ``{"<h>": metrics, ..., "rla_ceiling": metrics}`` (the ceiling for models that
        carry an RLA), plus ``"_seconds"`` per model.
    """
    from rla_gym.envs.config import RLAWorldConfig
    from rla_gym.envs.core import DreamCore

    start, real, horizons = outcomes.start, outcomes.real, outcomes.horizons
    noise_seeds = start_noise_seeds(cfg, len(start))
    result: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, opts in models.items():
        t0 = time.perf_counter()
        core = DreamCore(
            RLAWorldConfig(artifacts=outcomes.bundle, flow_steps=cfg.flow_steps, **opts)
        )
        if core.history and outcomes.previous is None:
            raise ValueError(
                f"{name} is conditioned on the frame one chunk earlier, but these real outcomes "
                "were saved without it; measure them again (measure_real records it)"
            )
        body = None
        if core.body_fields:
            if outcomes.body is None:
                raise ValueError(
                    f"{name} dreams the robot's body, but these real outcomes were saved without "
                    "it; measure them again (measure_real records it)"
                )
            body = outcomes.body["start"]

        def step(s: Any, a: Any, g: Any, p: Any, b: Any = None, c: Any = core) -> Any:
            out = c.dream(s, a, g, s_prev=p, body=b)
            return out[0] if b is None else (out[0], out[2])

        dream = dream_outcomes(
            step,
            start,
            outcomes.sequences,
            core.chunk,
            horizons,
            noise_seeds,
            cfg.batch_size,
            outcomes.previous,
            body,
        )
        entry: dict[str, Any] = {
            str(h): outcome_metrics(
                start, real[:, :, hi], dream[:, :, hi], outcomes.reference[hi], cfg.outcomes
            )
            for hi, h in enumerate(horizons)
        }
        rla = getattr(core.model, "rla", None)
        if rla is not None and 1 in horizons:
            entry["rla_ceiling"] = score_rla_ceiling(outcomes, rla, cfg.batch_size, cfg.outcomes)
        seconds[name] = time.perf_counter() - t0
        result[name] = entry
        log(
            f"  {name}: "
            + "  ".join(
                f"h{h}: dir {entry[str(h)]['direction']:.3f} ratio "
                f"{entry[str(h)]['magnitude_ratio']:.3f}"
                for h in horizons
            )
            + f" ({seconds[name]:.0f} s)"
        )
    result["_seconds"] = seconds
    return result


def score_rla_ceiling(
    outcomes: RealOutcomes,
    rla: Any,
    batch_size: int = 64,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One-chunk metrics of ``rla`` decoding the true latent of every real outcome: what a
    perfect latent predictor on this RLA would reach (needs horizon 1 in ``outcomes``; ``names``
    as in :func:`outcome_metrics`)."""
    h1 = outcomes.horizons.index(1)
    real = outcomes.real[:, :, h1]
    ceiling = rla_ceiling_outcomes(rla, outcomes.start, real, batch_size)
    return {**outcome_metrics(outcomes.start, real, ceiling, outcomes.reference[h1], names),
            "horizon": "1",
            "what": "the RLA decoding the true latent of each real one-chunk outcome: "
                    "decode(s, encode(s, real))"}  # fmt: skip
