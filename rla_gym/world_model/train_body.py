"""``rla-gym train-body``: fit :class:`~rla_gym.world_model.body.BodyDynamics` on a dataset's
recorded proprio and actions (no frames, no features: seconds on a CPU).

Held out by episode (the world models' split), it reports the next body's R^2 after 1 chunk and
after 4 chunks rolled out from the model's own predictions, per field and pooled.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rla_gym.data.episodes import EpisodeStore
from rla_gym.data.feature_episodes import load_body_actions
from rla_gym.utils.stats import r2_score
from rla_gym.world_model.body import BodyDynamics, BodyDynamicsConfig, body_windows

__all__ = ["TrainBodyConfig", "rollout_r2", "train_body_dynamics"]


@dataclass(frozen=True, kw_only=True)
class TrainBodyConfig:
    data: Path
    """dataset folder (rla-gym collect records every episode's proprio)"""
    out: Path
    """output folder: <out>/checkpoint (config.json + model.safetensors + meta.json)"""
    chunk: int = 8
    """control steps per predicted change: the bundle's chunk K"""
    hidden: int = 256
    """width of the two hidden layers"""
    steps: int = 6000
    """optimiser steps"""
    batch_size: int = 256
    """windows per optimiser step"""
    learning_rate: float = 1e-3
    """AdamW, cosine-annealed to zero"""
    val_fraction: float = 0.1
    """held-out episodes (by episode id, the world models' split)"""
    seed: int = 0
    """split and initialisation seed"""


def rollout_r2(
    model: BodyDynamics, bodies: list[np.ndarray], actions: list[np.ndarray], chunks: int
) -> dict[str, Any]:
    """R^2 of the body after ``chunks`` chunks, each predicted from the previous prediction, from
    every chunk-aligned start of the episodes: ``{"pooled": r2, "by_field": {name: r2}}``
    (:func:`~rla_gym.utils.stats.r2_score`: pooled over every field, and per field)."""
    k, fields = model.config.chunk, model.config.proprio_fields
    pred, true = [], []
    with torch.no_grad():
        for body, act in zip(bodies, actions, strict=True):
            starts = list(range(0, len(act) - chunks * k + 1, k))
            if not starts:
                continue
            cur = torch.from_numpy(body[starts]).float()
            for c in range(chunks):
                chunk = np.stack([act[t + c * k : t + (c + 1) * k] for t in starts])
                cur = model(cur, torch.from_numpy(chunk))
            pred.append(cur.numpy())
            true.append(body[[t + chunks * k for t in starts]])
    if not pred:
        raise ValueError(f"no held-out episode is {chunks} chunks long")
    p, y = np.concatenate(pred), np.concatenate(true)
    by_field = {f: r2_score(p[:, i : i + 1], y[:, i : i + 1]) for i, f in enumerate(fields)}
    return {"pooled": r2_score(p, y), "by_field": by_field}


def train_body_dynamics(cfg: TrainBodyConfig) -> dict[str, Any]:
    """Train, evaluate on held-out episodes, save ``<out>/checkpoint``; returns its meta.

    Raises:
        ValueError: a dataset without proprio (the message names the collector), or episodes
            shorter than a chunk.
    """
    torch.manual_seed(cfg.seed)
    store = EpisodeStore(cfg.data)
    train_ids, val_ids = store.split(cfg.val_fraction, cfg.seed)
    bodies, actions, fields = load_body_actions(cfg.data, train_ids + val_ids)
    n = len(train_ids)
    x, y = body_windows(bodies[:n], actions[:n], cfg.chunk, fields)
    model = BodyDynamics(
        BodyDynamicsConfig(proprio_fields=fields, chunk=cfg.chunk,
                           action_dim=int(actions[0].shape[1]), hidden=cfg.hidden)
    )  # fmt: skip
    model.fit_stats(x, y)
    want = (y - model.out_mean) / model.out_std
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, loss = time.time(), torch.tensor(float("nan"))
    model.train()
    for _ in range(cfg.steps):
        j = torch.randint(0, len(x), (cfg.batch_size,), generator=gen)
        loss = F.mse_loss(model.change(x[j]), want[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    val = (bodies[n:], actions[n:]) if val_ids else (bodies[:n], actions[:n])
    meta = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "train_episodes": n,
        "val_episodes": len(val_ids),
        "train_windows": len(x),
        "final_loss": float(loss.detach()),
        "wall_clock_s": time.time() - start,
        "val_r2": {str(c): rollout_r2(model, *val, chunks=c) for c in (1, 4)},
        "data": str(cfg.data),
    }
    model.save_pretrained(cfg.out / "checkpoint", meta=meta)
    return meta
