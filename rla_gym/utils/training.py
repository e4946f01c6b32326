"""A small, generic training loop shared by the RLA autoencoder and the world model.

What it does for any model:

* AdamW with optional linear warm-up and gradient clipping;
* periodic validation through a user callback and periodic checkpoints;
* tqdm progress, TensorBoard scalars (when ``tensorboard`` is installed) and a ``metrics.jsonl``;
* **exact resume**: the checkpoint holds model, optimizer, step and every RNG the loop consumes
  (trainer ``torch.Generator``, global torch RNG, sampler state per rank), so a run that is
  interrupted and resumed ends with the same weights as an uninterrupted one;
* **DDP**: under ``torchrun`` (``WORLD_SIZE > 1``) it initialises the process group (``gloo`` on
  CPU, ``nccl`` on CUDA), wraps the model in ``DistributedDataParallel``, gives each rank its own
  sampler stream, and lets only rank 0 write checkpoints and logs.

Output folder layout::

    <out_dir>/checkpoint/   config.json, model.safetensors, meta.json, optimizer.pt, train_state.pt
    <out_dir>/metrics.jsonl one JSON object per log / validation event
    <out_dir>/tb/           TensorBoard events (if tensorboard is installed)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from rla_gym.utils.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from rla_gym.utils.device import resolve_device

__all__ = [
    "DistInfo",
    "LossFn",
    "Sampler",
    "TrainResult",
    "TrainerConfig",
    "dist_info",
    "fit",
    "set_threads",
]

CHECKPOINT_DIR = "checkpoint"

LossFn = Callable[
    [nn.Module, dict[str, torch.Tensor], torch.Generator], tuple[torch.Tensor, dict[str, float]]
]
"""``loss_fn(model, batch, generator) -> (scalar loss, metrics)``.

``batch`` is already on the training device. ``generator`` is the trainer's CPU
``torch.Generator`` — draw any training noise (flow times, ``x_0``) from it so that resume is
exact. ``model`` may be a DDP wrapper; call it (``model(...)``), not its custom methods, if you
need gradients to synchronise across ranks.
"""

ValFn = Callable[[nn.Module], dict[str, float]]
"""``val_fn(model) -> metrics``; receives the unwrapped model in eval mode under ``no_grad``."""


class Sampler(Protocol):
    """What :func:`fit` needs from a batch source, e.g. a ``PairSampler``."""

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A random batch of CPU tensors."""
        ...

    def reseed(self, seed: int) -> None:
        """Restart the random stream."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Picklable RNG state (plain Python types)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        ...


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    """Optimisation and bookkeeping options of :func:`fit`.

    Each training entry point nests one (``TrainRLAConfig.trainer``,
    ``TrainWorldModelConfig.trainer``) with its own defaults; on the command line the fields are
    plain flags (``--steps``, ``--learning-rate``, ``--stop-at``).
    """

    steps: int = 1000
    """Total optimizer steps (a resumed run continues up to this number)."""
    batch_size: int = 32
    """Samples per step *per rank* (under torchrun)."""
    learning_rate: float = 3e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay (paper: 0)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0; constant afterwards (paper: no schedule)."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value (``None``: no clipping)."""
    val_every: int = 500
    """Run the validation callback every this many steps (and at the end)."""
    ckpt_every: int = 1000
    """Write the resumable checkpoint every this many steps (and at the end)."""
    log_every: int = 10
    """Log training metrics every this many steps."""
    seed: int = 0
    """Seed of the weights, the trainer's torch generator, (with the rank) the sampler stream,
    and of the train / validation split of the entry points."""
    device: str = "auto"
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"`` (DDP on CUDA uses ``LOCAL_RANK``)."""
    num_threads: int | None = None
    """CPU intra-op threads (``None``: torch's default). On a machine shared with other jobs use
    1: with oversubscribed cores torch's spinning worker threads made a step ~25x slower in our
    measurements (0.13 vs 3.3 steps/s)."""
    progress: bool = True
    """Show a tqdm progress bar on rank 0."""
    tensorboard: bool = True
    """Write TensorBoard scalars on rank 0 if ``tensorboard`` is installed."""
    stop_at: int | None = None
    """Stop after this step without finishing (writes a checkpoint; re-running resumes): split a
    long run into sessions, or test resumption."""


def set_threads(cfg: TrainerConfig) -> None:
    """Apply ``cfg.num_threads`` (entry points call it before loading data, :func:`fit` again)."""
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        step: the last completed step.
        train_metrics: metrics of the last logged step.
        val_metrics: metrics of the last validation (empty without ``val_fn``).
        checkpoint: the checkpoint folder (rank 0), or ``None`` on other ranks.
        wall_clock: seconds spent in this call.
        resumed_from: the step training resumed from (0 for a fresh run).
        history: every logged event, as also written to ``metrics.jsonl``.
    """

    step: int
    train_metrics: dict[str, float]
    val_metrics: dict[str, float]
    checkpoint: Path | None
    wall_clock: float
    resumed_from: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DistInfo:
    """Rank layout of this process (``world_size == 1`` outside ``torchrun``)."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and logs."""
        return self.rank == 0


def dist_info() -> DistInfo:
    """Read ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` as set by ``torchrun``."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def _rank_seed(seed: int, rank: int) -> int:
    # A large odd multiplier keeps the per-rank streams of nearby seeds from overlapping.
    return (seed * 1_000_003 + rank) % (2**63)


def _move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _Logger:
    """Rank-0 sinks: ``metrics.jsonl``, TensorBoard and the tqdm postfix."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        self.writer: Any = None
        self.path = out_dir / "metrics.jsonl"
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional; skip quietly
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(out_dir / "tb"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        event = {"step": step, **metrics}
        self.history.append(event)
        with open(self.path, "a") as f:
            f.write(json.dumps(event) + "\n")
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    sampler: Sampler,
    cfg: TrainerConfig,
    out_dir: str | os.PathLike[str],
    model_config: Any,
    val_fn: ValFn | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on batches from ``sampler``, resuming from ``out_dir`` if possible.

    Args:
        model: the module to train (moved to the device; wrapped in DDP under ``torchrun``). All
            ranks must build it identically; DDP broadcasts rank 0's weights anyway.
        loss_fn: see :data:`LossFn`.
        sampler: see :class:`Sampler`; reseeded from ``cfg.seed`` and the rank.
        cfg: options.
        out_dir: output folder; if it holds a checkpoint, training resumes from it.
        model_config: the model's config (dataclass or dict) stored as ``config.json``.
        val_fn: optional validation callback, see :data:`ValFn`.
        meta: extra provenance stored in ``meta.json`` (train/val metrics, step and wall-clock
            are added automatically).

    Returns:
        A :class:`TrainResult`.

    Raises:
        RuntimeError: the loss became NaN or infinite.

    Note:
        The global torch RNG is seeded (per rank) so that dropout and other global draws are
        resumable. Under ``torchrun`` the process group is left initialised for the caller.
    """
    t_start = time.time()
    set_threads(cfg)
    out_dir = Path(out_dir)
    info = dist_info()
    distributed = info.world_size > 1
    if distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
    device = resolve_device(cfg.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)

    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    generator = torch.Generator().manual_seed(_rank_seed(cfg.seed, info.rank))
    sampler.reseed(_rank_seed(cfg.seed, info.rank))
    torch.manual_seed(_rank_seed(cfg.seed, info.rank))

    ckpt_dir = out_dir / CHECKPOINT_DIR
    step = 0
    elapsed_before = 0.0
    ckpt: Any = None
    if has_checkpoint(ckpt_dir):
        ckpt = load_checkpoint(ckpt_dir, map_location=device)
        _unwrap(model).load_state_dict(ckpt.state_dict)
        state = ckpt.train_state or {}
        if ckpt.optimizer is not None:
            optimizer.load_state_dict(ckpt.optimizer)
        step = int(state.get("step", 0))
        elapsed_before = float(state.get("wall_clock", 0.0))
        ranks = state.get("ranks", [])
        if len(ranks) == info.world_size:
            mine = ranks[info.rank]
            generator.set_state(mine["generator"])
            torch.set_rng_state(mine["torch"])
            sampler.load_state_dict(mine["sampler"])
        elif step:
            # Another world size: no exact continuation exists; at least do not replay the
            # first steps' batches.
            sampler.reseed(_rank_seed(cfg.seed + step, info.rank))
            generator.manual_seed(_rank_seed(cfg.seed + step, info.rank))
    resumed_from = step
    if ckpt is not None and step >= cfg.steps and ckpt.meta.get("finished", False):
        # Nothing left to do: return the stored result instead of rewriting the checkpoint.
        return TrainResult(
            step=step,
            train_metrics=ckpt.meta.get("train_metrics", {}),
            val_metrics=ckpt.meta.get("val_metrics", {}),
            checkpoint=ckpt_dir if info.is_main else None,
            wall_clock=time.time() - t_start,
            resumed_from=resumed_from,
        )

    train_model: nn.Module = model
    if distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    logger = _Logger(out_dir, enabled=info.is_main, tensorboard=cfg.tensorboard and info.is_main)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    bar: Any = None
    if info.is_main and cfg.progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True)
        except ImportError:
            bar = None

    def validate() -> dict[str, float]:
        if val_fn is None:
            return {}
        base = _unwrap(train_model)
        was_training = base.training
        base.eval()
        with torch.no_grad():
            metrics = val_fn(base)
        base.train(was_training)
        return metrics

    def checkpoint(final: bool) -> Path | None:
        rank_state = {
            "generator": generator.get_state(),
            "torch": torch.get_rng_state(),
            "sampler": sampler.state_dict(),
        }
        if distributed:
            gathered: list[Any] = [None] * info.world_size
            dist.all_gather_object(gathered, rank_state)
        else:
            gathered = [rank_state]
        if not info.is_main:
            return None
        wall = elapsed_before + time.time() - t_start
        full_meta = {
            **(meta or {}),
            "step": step,
            "finished": final,
            "wall_clock_s": wall,
            "train_metrics": train_metrics,
            "val_metrics": val_metrics,
            "world_size": info.world_size,
        }
        train_state = {"step": step, "wall_clock": wall, "ranks": gathered}
        return save_checkpoint(
            ckpt_dir, model_config, _unwrap(train_model), optimizer, train_state, full_meta
        )

    train_metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = {}
    train_model.train()
    last_step = cfg.steps if cfg.stop_at is None else min(cfg.stop_at, cfg.steps)
    try:
        while step < last_step:
            if cfg.warmup_steps > 0:
                scale = min(1.0, (step + 1) / cfg.warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * scale
            batch = _move(sampler.sample(cfg.batch_size), device)
            loss, metrics = loss_fn(train_model, batch, generator)
            if not math.isfinite(loss.item()):
                raise RuntimeError(
                    f"loss is {loss.item()} at step {step}; lower the learning rate "
                    f"(--learning-rate), enable gradient clipping, or check the data for NaN/inf"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                gnorm = nn.utils.clip_grad_norm_(train_model.parameters(), cfg.grad_clip)
                metrics = {**metrics, "train/grad_norm": float(gnorm)}
            optimizer.step()
            step += 1
            train_metrics = {"train/loss": loss.item(), **metrics}
            if bar is not None:
                bar.update(1)
                if step % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{loss.item():.4g}")
            if step % cfg.log_every == 0:
                logger.log(step, {**train_metrics, "train/lr": optimizer.param_groups[0]["lr"]})
            if step % cfg.val_every == 0 and step < cfg.steps:
                val_metrics = validate()
                logger.log(step, val_metrics)
            if step % cfg.ckpt_every == 0 and step < last_step:
                checkpoint(final=False)
        finished = step >= cfg.steps
        if finished and val_fn is not None:
            val_metrics = validate()
            logger.log(step, val_metrics)
        path = checkpoint(final=finished)
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    return TrainResult(
        step=step,
        train_metrics=train_metrics,
        val_metrics=val_metrics,
        checkpoint=path,
        wall_clock=time.time() - t_start,
        resumed_from=resumed_from,
        history=logger.history,
    )
