"""Training the RLA autoencoder on cached feature episodes.

``train_rla`` loads train/validation episodes from an :class:`~rla_gym.data.EpisodeStore` (or
takes in-memory episodes), samples ``(s_t, s_{t+h})`` pairs with
:class:`~rla_gym.data.windows.PairSampler`, and runs the shared trainer
(:func:`rla_gym.utils.training.fit`). The result is a checkpoint folder that
:meth:`RLAAutoencoder.from_pretrained` reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rla_gym.data.feature_episodes import FeatureDataConfig, FeatureSplit, load_split
from rla_gym.data.windows import PairSampler
from rla_gym.rla.config import RLAConfig
from rla_gym.rla.model import RLAAutoencoder, reconstruction_loss
from rla_gym.utils.checkpoint import has_checkpoint
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.training import CHECKPOINT_DIR, TrainerConfig, TrainResult, fit, set_threads

__all__ = ["TrainRLAConfig", "init_linear_path", "train_rla"]


@dataclass(frozen=True, kw_only=True)
class TrainRLAConfig:
    """Everything ``rla-gym train-rla`` needs.

    The defaults train the CPU preset in roughly half an hour on two cores (see ``RLAConfig``).
    """

    data: FeatureDataConfig = field(default_factory=FeatureDataConfig)
    """Training data: dataset folder, encoder, split and pair sampling."""
    out: str = "runs/rla"
    """Output folder; the model is written to ``<out>/checkpoint``. Re-running resumes."""
    rla: RLAConfig = field(default_factory=RLAConfig)
    """Autoencoder sizes; ``feature_dim``, ``num_tokens`` and ``encoder_fingerprint`` are
    overwritten from the data."""
    linear_init_pairs: int = 4096
    """Training pairs whose residuals initialise the linear path (``rla.linear_rank > 0``) to
    their principal components; drawn from a private generator, so the training stream is the
    same with or without the path. Ignored when resuming."""
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            steps=3000,
            warmup_steps=100,
            val_every=500,
            ckpt_every=500,
        )
    )
    """Optimisation and bookkeeping. Learning rate: the paper uses 1e-4 at batch 128 for 100k
    steps; small models and short runs tolerate the default 3e-4."""


def _rla_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction loss through ``model(...)`` so that DDP synchronises gradients."""
    del generator  # the autoencoder is deterministic
    s_hat, z = model(batch["s_t"], batch["s_th"])
    base: RLAAutoencoder = model.module if hasattr(model, "module") else model  # type: ignore[assignment]
    c = base.config
    loss, l1, mse = reconstruction_loss(
        s_hat, batch["s_th"], c.l1_weight, c.mse_weight, batch["s_t"], c.change_weight
    )
    return loss, {"rla/l1": l1.item(), "rla/mse": mse.item(), "rla/z_std": float(z.detach().std())}


def evaluate_rla(
    model: RLAAutoencoder, sampler: PairSampler, num_pairs: int = 256, batch_size: int = 64
) -> dict[str, float]:
    """Mean reconstruction metrics on the sampler's fixed evaluation pairs.

    Returns:
        ``val/l1``, ``val/mse``, ``val/copy_l1`` (L1 of predicting ``s_t``, i.e. "nothing moves")
        and ``val/l1_vs_copy`` (``val/l1 / val/copy_l1``; below 1 means the latent carries
        information about the change).
    """
    device = next(model.parameters()).device
    sums = {"l1": 0.0, "mse": 0.0, "copy_l1": 0.0}
    n = 0
    with torch.no_grad():
        for batch in sampler.iter_eval(num_pairs=num_pairs, batch_size=batch_size):
            s_t, s_th = batch["s_t"].to(device), batch["s_th"].to(device)
            s_hat, _ = model(s_t, s_th)
            b = s_t.shape[0]
            sums["l1"] += float(torch.nn.functional.l1_loss(s_hat, s_th)) * b
            sums["mse"] += float(torch.nn.functional.mse_loss(s_hat, s_th)) * b
            sums["copy_l1"] += float(torch.nn.functional.l1_loss(s_t, s_th)) * b
            n += b
    out = {f"val/{k}": v / n for k, v in sums.items()}
    out["val/l1_vs_copy"] = out["val/l1"] / max(out["val/copy_l1"], 1e-12)
    return out


def init_linear_path(model: RLAAutoencoder, sampler: PairSampler, num_pairs: int) -> torch.Tensor:
    """Initialise ``model``'s linear path from ``num_pairs`` residuals of ``sampler``'s pairs.

    Returns:
        The fraction of those residuals' energy the path's directions keep.
    """
    if num_pairs < model.config.linear_rank:
        raise ValueError(
            f"linear_init_pairs={num_pairs} is below linear_rank={model.config.linear_rank}"
        )
    residuals = torch.cat(
        [b["s_th"] - b["s_t"] for b in sampler.iter_eval(num_pairs, batch_size=256, seed=2024)]
    )
    return model.init_linear_path(residuals)


def train_rla(
    cfg: TrainRLAConfig,
    split: FeatureSplit | None = None,
) -> TrainResult:
    """Train (or resume training) an RLA autoencoder.

    Args:
        cfg: options.
        split: in-memory episodes; default: loaded and split as ``cfg.data`` says
            (:func:`~rla_gym.data.feature_episodes.load_split`).

    Returns:
        The trainer's :class:`~rla_gym.utils.training.TrainResult`; ``result.checkpoint`` is the
        folder to pass to :meth:`RLAAutoencoder.from_pretrained`.
    """
    set_threads(cfg.trainer)
    seed = cfg.trainer.seed
    split = split or load_split(cfg.data, seed)
    episodes, val_episodes, fingerprint = split.train, split.val, split.fingerprint
    rla_cfg = dataclasses.replace(
        cfg.rla,
        feature_dim=int(episodes[0][0].shape[2]),
        num_tokens=int(episodes[0][0].shape[1]),
        encoder_fingerprint=fingerprint or cfg.rla.encoder_fingerprint,
    )
    bias = cfg.data.interaction_bias
    sampler = PairSampler(episodes, rla_cfg.min_gap, rla_cfg.max_gap, bias, seed)
    val_sampler = (
        PairSampler(val_episodes, rla_cfg.min_gap, rla_cfg.max_gap, bias, seed)
        if val_episodes
        else None
    )
    # Same seed on every rank: identical initial weights even before DDP's broadcast.
    torch.manual_seed(seed)
    model = RLAAutoencoder(rla_cfg)
    linear_energy = None
    if rla_cfg.linear_rank and not has_checkpoint(Path(cfg.out) / CHECKPOINT_DIR):
        linear_energy = float(init_linear_path(model, sampler, cfg.linear_init_pairs))

    def val_fn(m: nn.Module) -> dict[str, float]:
        assert val_sampler is not None
        return evaluate_rla(m, val_sampler, num_pairs=cfg.data.val_pairs)  # type: ignore[arg-type]

    meta: dict[str, Any] = {
        "encoder": cfg.data.encoder,
        "encoder_fingerprint": rla_cfg.encoder_fingerprint,
        "grid": list(split.grid) if split.grid else None,
        "train_episodes": len(episodes),
        "val_episodes": len(val_episodes) if val_episodes else 0,
        "parameters": model.num_parameters(),
        "linear_path_energy": linear_energy,
        "train_config": to_jsonable(cfg),
    }
    return fit(
        model,
        _rla_loss,
        sampler,
        cfg.trainer,
        cfg.out,
        rla_cfg.to_dict(),
        val_fn=val_fn if val_sampler is not None else None,
        meta=meta,
    )
