"""Training RLA-WM and the learned baselines on cached feature episodes.

``train_world_model`` loads train/validation episodes from an :class:`~rla_gym.data.EpisodeStore`
(or takes in-memory episodes), samples ``(s_t, s_{t+h}, a_{t:t+h})`` with
:class:`~rla_gym.data.windows.PairSampler` (gaps ``1..H_max``, paper §2.3), fits the normalisation
statistics (actions; RLA latents or features) on a separate sample, and runs the shared trainer
(:func:`rla_gym.utils.training.fit`). The checkpoint folder ``<out>/checkpoint`` loads with
:func:`rla_gym.world_model.load_predictor`; its ``meta.json`` holds the training wall-clock
(``wall_clock_s``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rla_gym.data.feature_episodes import (
    FeatureDataConfig,
    FeatureSplit,
    load_split,
    sibling_groups,
)
from rla_gym.data.windows import PairSampler
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.training import TrainerConfig, TrainResult, fit, set_threads
from rla_gym.world_model.base import FeatureWorldModel
from rla_gym.world_model.baselines import DirectRegressionWM, FeatureFlowWM
from rla_gym.world_model.config import (
    BaselineConfig,
    LatentNorm,
    WorldModelConfig,
    world_model_preset,
)
from rla_gym.world_model.model import RLAWorldModel

__all__ = ["TrainWorldModelConfig", "evaluate_world_model", "train_world_model", "warm_start"]
ModelKind = Literal["rla-wm", "direct", "fm"]


@dataclass(frozen=True, kw_only=True)
class TrainWorldModelConfig:
    """Everything ``train_world_model`` needs (RLA-WM or a baseline)."""

    model: ModelKind = "rla-wm"
    """``"rla-wm"`` (flow in RLA latent space), ``"direct"`` (regression) or ``"fm"`` (flow in
    feature space)."""
    data: FeatureDataConfig = field(default_factory=lambda: FeatureDataConfig(val_pairs=64))
    """Training data: dataset folder, encoder, split and pair sampling (validation pairs each
    cost a full flow sample, so keep ``val_pairs`` small on CPU)."""
    rla: str = ""
    """RLA autoencoder checkpoint folder (required for ``model="rla-wm"``)."""
    out: str = "runs/wm"
    """Output folder; the model is written to ``<out>/checkpoint``. Re-running resumes."""
    preset: Literal["cpu-small", "cpu-compact", "tiny", "paper"] = "cpu-small"
    """RLA-WM size preset (see ``rla_gym.world_model.config.PRESETS``) when ``world_model`` is
    not given."""
    world_model: WorldModelConfig | None = None
    """Explicit RLA-WM config (``action_dim`` is overwritten from the data)."""
    latent_norm: LatentNorm | None = None
    """Replaces the preset's latent normalisation (default: the preset's, ``per_dim``).
    ``"scalar"`` suits an RLA with a linear path (``linear_rank > 0``), whose latent keeps the
    principal directions at their relative sizes: whitening them made the flow spend its loss on
    small, unpredictable directions (docs/studies.md, "Which levers make the dream follow the
    action?")."""
    latent_scale: float | None = None
    """Replaces the preset's divisor of ``z`` under ``latent_norm="scalar"``."""
    action_in_flow: bool | None = None
    """Replaces the preset's ``action_in_flow`` (off): the action vector also modulates every
    flow block (see ``WorldModelConfig.action_in_flow``)."""
    history: int | None = None
    """Replaces the preset's ``history`` (0): control steps back to the earlier frame an RLA-WM is
    also conditioned on; set it to the env's chunk ``K`` (see ``WorldModelConfig.history``)."""
    init_from: str = ""
    """Warm start (RLA-WM): a world-model checkpoint, e.g. a bundle's ``world_model/`` folder,
    whose weights and statistics of the same name and shape initialise this model; its frozen
    RLA is used when ``rla`` is empty. Parts it does not have (a body head, the zero-initialised
    proprio embedding) start fresh, so the new model starts as the old one's predictions. A
    resumed run continues from its own checkpoint instead."""
    proprio: bool = False
    """Dream the robot's body too: the dataset's body vectors (``rla_gym.data.proprio``) condition
    every prediction and a head predicts the next one (``WorldModelConfig.proprio_fields``).
    RLA-WM only."""
    baseline: BaselineConfig | None = None
    """Explicit baseline config (``feature_dim``, ``num_tokens``, ``action_dim`` and the
    fingerprint are overwritten from the data); default sizes otherwise."""
    sibling_fraction: float = 0.0
    """Share of every training batch drawn as *sibling* pairs: two episodes of the training split
    that start from one exactly restored real state under different actions (branch data,
    ``rla-gym collect --policy branch``; see ``rla_gym.data.feature_episodes.sibling_groups``).
    RLA-WM only. ``0``: the paper's sampling."""
    sibling_weight: float = 1.0
    """Weight of the loss on the sibling pairs' outcome *difference* (see
    ``RLAWorldModel.loss``): with shared noise it is exactly the part of the outcome the action
    decides."""
    min_gap: int = 1
    """Smallest gap ``h`` of training pairs."""
    max_gap: int | None = None
    """Largest gap ``h`` (default: the model's ``max_horizon``; must not exceed it)."""
    norm_pairs: int = 512
    """Pairs used to measure the normalisation statistics before training."""
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            steps=6000,
            warmup_steps=100,
            val_every=1000,
            ckpt_every=500,
        )
    )
    """Optimisation and bookkeeping. Speed at N=64, D=512, A=7, batch 32 with default sizes,
    measured steps/s: RLA-WM 5.5 / direct 6.4 / fm 3.5 on 2 threads of a quiet 2-core machine
    (6000 steps: 18 / 16 / 29 min); 3.2 / 3.6 / 2.0 on 1 thread of a busy one (RLA-WM ~31 min).
    Learning rate: the paper uses 1e-4 at batch 64 for 100k steps; short CPU runs tolerate the
    default 3e-4."""


def _wm_loss(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    sibling_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss through ``model(...)`` so that DDP synchronises gradients."""
    siblings = (
        {"sibling_pairs": batch["sibling_pairs"], "sibling_weight": sibling_weight}
        if "sibling_pairs" in batch
        else {}
    )
    out = model(
        batch["s_t"],
        batch["s_th"],
        batch["actions"],
        batch["lengths"],
        generator,
        **_previous(batch),
        **siblings,
        **_body(batch),
    )
    return out["loss"], {f"wm/{k}": float(v) for k, v in out.items() if k != "loss"}


def _previous(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"s_prev": ...}`` for a history model's batches, ``{}`` otherwise (the baselines and
    Markov models take no such argument)."""
    return {"s_prev": batch["s_prev"]} if "s_prev" in batch else {}


def _body(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"p_t": ..., "p_th": ...}`` for a body model's batches, ``{}`` otherwise."""
    return {"p_t": batch["p_t"], "p_th": batch["p_th"]} if "p_t" in batch else {}


@torch.no_grad()
def evaluate_world_model(
    model: FeatureWorldModel,
    sampler: PairSampler,
    num_pairs: int = 64,
    batch_size: int = 32,
    seed: int = 2026,
) -> dict[str, float]:
    """Validation loss and single-step prediction error on the sampler's fixed pairs.

    The noise comes from a private generator seeded with ``seed``, so the numbers are comparable
    across validation rounds.

    Returns:
        ``val/loss``, ``val/pred_l1`` (mean ``|ŝ_{t+h} - s_{t+h}|``), ``val/copy_l1`` (the same for
        "nothing moves") and ``val/l1_vs_copy`` (below 1: better than copying the frame); for a
        body model also ``val/body_r2``, the R² of the predicted next body vector over all its
        entries (1 - residual / total sum of squares about the entries' means).
    """
    g = torch.Generator().manual_seed(seed)
    sums = {"loss": 0.0, "pred_l1": 0.0, "copy_l1": 0.0}
    n = 0
    body_pred, body_true = [], []
    for batch in sampler.iter_eval(num_pairs=num_pairs, batch_size=batch_size):
        dev = model._device()
        s_t, s_th = batch["s_t"].to(dev), batch["s_th"].to(dev)
        b = s_t.shape[0]
        prev, body = _previous(batch), _body(batch)
        loss = model.loss(s_t, s_th, batch["actions"], batch["lengths"], g, **prev, **body)["loss"]  # type: ignore[operator]
        sums["loss"] += float(loss) * b
        pred, nxt = model.sample_state(
            s_t, batch["actions"], batch["lengths"], generator=g, proprio=body.get("p_t"), **prev
        )
        pred = pred[:, 0]
        if nxt is not None:
            body_pred.append(nxt.cpu())
            body_true.append(body["p_th"].float())
        sums["pred_l1"] += float((pred - s_th).abs().mean()) * b
        sums["copy_l1"] += float((s_t - s_th).abs().mean()) * b
        n += b
    out = {f"val/{k}": v / max(n, 1) for k, v in sums.items()}
    out["val/l1_vs_copy"] = out["val/pred_l1"] / max(out["val/copy_l1"], 1e-12)
    if body_pred:
        from rla_gym.utils.stats import r2_score

        out["val/body_r2"] = r2_score(torch.cat(body_pred).numpy(), torch.cat(body_true).numpy())
    return out


def _siblings(cfg: TrainWorldModelConfig, split: FeatureSplit) -> tuple[list[np.ndarray], float]:
    """The training sampler's sibling groups and fraction (none unless asked for)."""
    if cfg.sibling_fraction <= 0:
        return [], 0.0
    if cfg.model != "rla-wm":
        raise ValueError(f"sibling_fraction applies to model='rla-wm', not {cfg.model!r}")
    if not cfg.sibling_weight >= 0:
        raise ValueError(f"sibling_weight must be >= 0, got {cfg.sibling_weight}")
    if not split.train_ids:
        raise ValueError(
            "sibling_fraction needs the episodes' ids to find branch points; load the split "
            "from a dataset folder (--data) instead of passing episodes in memory"
        )
    return sibling_groups(cfg.data.folder, split.train_ids), cfg.sibling_fraction


def _preset_overrides(cfg: TrainWorldModelConfig) -> dict[str, Any]:
    """The RLA-WM preset fields this config replaces (``None``: keep the preset's)."""
    return {
        "latent_norm": cfg.latent_norm,
        "latent_scale": cfg.latent_scale,
        "history": cfg.history,
        "action_in_flow": cfg.action_in_flow,
    }


def _build_model(
    cfg: TrainWorldModelConfig,
    feature_dim: int,
    num_tokens: int,
    action_dim: int,
    fingerprint: str | None,
    proprio_fields: tuple[str, ...] = (),
    source: RLAWorldModel | None = None,
) -> FeatureWorldModel:
    """The model to train; ``source`` is the warm start's checkpoint (``init_from``), whose RLA
    and architecture an RLA-WM then reuses."""
    if cfg.proprio and cfg.model != "rla-wm":
        raise ValueError(f"proprio applies to model='rla-wm', not {cfg.model!r}")
    if cfg.model == "rla-wm":
        if not (cfg.rla or cfg.init_from):
            raise ValueError(
                "model='rla-wm' needs TrainWorldModelConfig.rla (an RLA checkpoint) or init_from "
                "(a world model whose RLA it reuses)"
            )
        from rla_gym.rla import RLAAutoencoder

        rla = (
            RLAAutoencoder.from_pretrained(cfg.rla, expected_fingerprint=fingerprint or None)
            if cfg.rla or source is None
            else source.rla
        )
        rc = rla.config
        if (rc.num_tokens, rc.feature_dim) != (num_tokens, feature_dim):
            raise ValueError(
                f"RLA of {cfg.rla or cfg.init_from} expects features of shape ({rc.num_tokens}, "
                f"{rc.feature_dim}) but the data has ({num_tokens}, {feature_dim})"
            )
        norm = {k: v for k, v in _preset_overrides(cfg).items() if v is not None}
        if cfg.world_model is not None and norm:
            raise ValueError(
                f"{sorted(norm)} replace a preset's fields; with an explicit world_model config "
                "set them in that config instead"
            )
        if cfg.world_model is not None:
            wm_cfg = dataclasses.replace(cfg.world_model, action_dim=action_dim)
        elif source is not None:
            # A warm start keeps the source's architecture (its preset and options).
            wm_cfg = dataclasses.replace(source.config, action_dim=action_dim, **norm)
        else:
            wm_cfg = world_model_preset(cfg.preset, action_dim, **norm)
        if proprio_fields:
            wm_cfg = dataclasses.replace(wm_cfg, proprio_fields=proprio_fields)
        return RLAWorldModel(wm_cfg, rla)
    if cfg.model not in ("direct", "fm"):
        raise ValueError(f"unknown model {cfg.model!r}; use 'rla-wm', 'direct' or 'fm'")
    overrides = _preset_overrides(cfg)
    if any(v is not None for v in overrides.values()):
        raise ValueError(f"{' / '.join(overrides)} apply to model='rla-wm', not {cfg.model!r}")
    fields = dict(
        feature_dim=feature_dim,
        num_tokens=num_tokens,
        action_dim=action_dim,
        encoder_fingerprint=fingerprint or "",
    )
    b_cfg = (
        dataclasses.replace(cfg.baseline, **fields)
        if cfg.baseline is not None
        else BaselineConfig(**fields)
    )
    return DirectRegressionWM(b_cfg) if cfg.model == "direct" else FeatureFlowWM(b_cfg)


def _warm_start_source(cfg: TrainWorldModelConfig, fingerprint: str | None) -> RLAWorldModel:
    """The ``init_from`` checkpoint (an RLA-WM reading the data's encoder)."""
    if cfg.model != "rla-wm":
        raise ValueError(f"init_from applies to model='rla-wm', not {cfg.model!r}")
    return RLAWorldModel.from_pretrained(cfg.init_from, expected_fingerprint=fingerprint or None)


@torch.no_grad()
def warm_start(model: nn.Module, source: nn.Module) -> dict[str, list[str]]:
    """Copy every parameter and buffer of ``source`` whose name and shape ``model`` shares.

    Returns:
        ``{"copied": names, "fresh": names of model's entries the source did not have}``.

    Raises:
        ValueError: nothing matched (another architecture).
    """
    theirs = source.state_dict()
    copied, fresh = [], []
    for name, t in model.state_dict().items():
        if name in theirs and theirs[name].shape == t.shape:
            t.copy_(theirs[name])
            copied.append(name)
        else:
            fresh.append(name)
    if not copied:
        raise ValueError("init_from shares no weight with this model; is it another architecture?")
    return {"copied": copied, "fresh": fresh}


def train_world_model(
    cfg: TrainWorldModelConfig,
    split: FeatureSplit | None = None,
) -> TrainResult:
    """Train (or resume training) RLA-WM or a baseline.

    Args:
        cfg: options.
        split: in-memory episodes; default: loaded and split as ``cfg.data`` says
            (:func:`~rla_gym.data.feature_episodes.load_split`). Its fingerprint is checked
            against the RLA checkpoint.

    Returns:
        The trainer's :class:`~rla_gym.utils.training.TrainResult`; ``result.checkpoint`` loads
        with :func:`rla_gym.world_model.load_predictor`.
    """
    set_threads(cfg.trainer)
    seed = cfg.trainer.seed
    split = split or load_split(cfg.data, seed, proprio=cfg.proprio)
    episodes, val_episodes, fingerprint = split.train, split.val, split.fingerprint
    if cfg.proprio and split.train_proprio is None:
        raise ValueError(
            "proprio=True needs the episodes' body vectors: load the split from a dataset folder "
            "(--data) recorded by `rla-gym collect`, or pass a FeatureSplit with train_proprio"
        )
    body, val_body = (split.train_proprio, split.val_proprio) if cfg.proprio else (None, None)
    feats0, acts0 = episodes[0]
    # Loaded once: the warm start gives the model its RLA and architecture, then its weights.
    source = _warm_start_source(cfg, fingerprint) if cfg.init_from else None
    # Same seed on every rank: identical initial weights even before DDP's broadcast.
    torch.manual_seed(seed)
    model = _build_model(
        cfg,
        int(feats0.shape[2]),
        int(feats0.shape[1]),
        int(acts0.shape[1]),
        fingerprint,
        split.proprio_fields if cfg.proprio else (),
        source,
    )
    max_gap = cfg.max_gap or model.max_horizon
    if max_gap > model.max_horizon:
        raise ValueError(f"max_gap={max_gap} exceeds the model's max_horizon={model.max_horizon}")
    bias, hist = cfg.data.interaction_bias, model.history
    sampler = PairSampler(
        episodes, cfg.min_gap, max_gap, bias, seed, hist, *_siblings(cfg, split), proprio=body
    )
    val_sampler = (
        PairSampler(val_episodes, cfg.min_gap, max_gap, bias, seed, hist, proprio=val_body)
        if val_episodes
        else None
    )
    # Statistics come from a private sampler so the training stream (and resume) is untouched.
    norm_sampler = PairSampler(episodes, cfg.min_gap, max_gap, bias, seed + 1, hist, proprio=body)
    model.fit_normalization(  # type: ignore[attr-defined]
        norm_sampler.iter_eval(num_pairs=cfg.norm_pairs, batch_size=64, seed=seed + 1)
    )
    warm: dict[str, Any] = {}
    if source is not None:
        # After the statistics: the source's own action / latent statistics belong to its
        # weights and are kept; only what it lacks (the body's) comes from this data. The RLA is
        # the source's too (or the same file), so copying it changes nothing.
        parts = warm_start(model, source)
        warm = {"init_from": cfg.init_from, "fresh_weights": parts["fresh"]}

    def val_fn(m: nn.Module) -> dict[str, float]:
        assert val_sampler is not None
        return evaluate_world_model(m, val_sampler, num_pairs=cfg.data.val_pairs)  # type: ignore[arg-type]

    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    meta: dict[str, Any] = {
        "encoder": cfg.data.encoder,
        "encoder_fingerprint": model.encoder_fingerprint,
        "rla_checkpoint": cfg.rla or None,
        "grid": list(split.grid) if split.grid else None,
        "train_episodes": len(episodes),
        "val_episodes": len(val_episodes) if val_episodes else 0,
        "trainable_parameters": n_params,
        "train_config": to_jsonable(cfg),
        **warm,
    }
    if cfg.sibling_fraction > 0:
        meta["sibling_groups"] = len(sampler.siblings)
    return fit(
        model,
        functools.partial(_wm_loss, sibling_weight=cfg.sibling_weight),
        sampler,
        cfg.trainer,
        cfg.out,
        model.checkpoint_config(),  # type: ignore[attr-defined]
        val_fn=val_fn if val_sampler is not None else None,
        meta=meta,
    )
