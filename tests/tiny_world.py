"""The tiny world-model fixtures shared by the world-model tests: features of a point moved by
the actions (``synthetic_episodes``), a briefly trained RLA over them (the ``rla`` fixture) and
builders of tiny world models and baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rla_gym.data.windows import PairSampler
from rla_gym.rla import RLAAutoencoder, RLAConfig
from rla_gym.world_model import (
    BaselineConfig,
    DirectRegressionWM,
    FeatureFlowWM,
    RLAWorldModel,
    world_model_preset,
)

__all__ = [
    "FP",
    "H_MAX",
    "A",
    "D",
    "Episodes",
    "N",
    "batch",
    "episodes",
    "gen",
    "make_baseline",
    "make_wm",
    "render_points",
    "rla",
    "synthetic_episodes",
]

N, D, A, H_MAX = 4, 8, 2, 6
FP = "synthetic@000000000000"


Episodes = list[tuple[np.ndarray, np.ndarray]]


def render_points(p: np.ndarray) -> np.ndarray:
    """Positions ``(T+1, 2)`` -> features ``float32 (T+1, N, D)``: token ``i`` is
    ``tanh(W_i p + b_i)`` for fixed random ``W_i, b_i`` (the same for every data set)."""
    w = np.random.default_rng(123).normal(size=(N, D, 2)).astype(np.float32)
    b = np.random.default_rng(124).normal(size=(N, D)).astype(np.float32)
    return np.tanh(np.einsum("ndk,tk->tnd", w, p.astype(np.float32)) + b[None]).astype(np.float32)


def synthetic_episodes(num: int = 6, length: int = 40, seed: int = 0) -> Episodes:
    """Features driven by actions: a 2-D point moves by ``0.1 * a_t`` and is rendered per token.

    Token ``i`` is ``tanh(W_i p + b_i)`` for fixed random ``W_i, b_i``, so ``s_{t+h}`` is a
    smooth function of ``s_t`` and the actions in between (learnable, not trivially copyable).
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        acts = rng.uniform(-1, 1, size=(length, A)).astype(np.float32)
        start = rng.uniform(-1, 1, (1, 2))
        feats = render_points(np.concatenate([start, start + 0.1 * np.cumsum(acts, 0)]))
        out.append((feats, acts))
    return out


@pytest.fixture(scope="module")
def episodes() -> Episodes:
    return synthetic_episodes()


@pytest.fixture(scope="module")
def rla(episodes: Episodes) -> RLAAutoencoder:
    """A tiny RLA trained briefly so its decoder actually depends on ``z``."""
    torch.manual_seed(0)
    model = RLAAutoencoder(
        RLAConfig(
            feature_dim=D,
            num_tokens=N,
            latent_tokens=2,
            latent_dim=4,
            width=32,
            depth=1,
            heads=2,
            encoder_fingerprint=FP,
        )
    )
    sampler = PairSampler(episodes, 1, H_MAX, 0.5, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        b = sampler.sample(32)
        loss, _ = model.loss(b["s_t"], b["s_th"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def make_wm(rla: RLAAutoencoder, seed: int = 0) -> RLAWorldModel:
    torch.manual_seed(seed)
    return RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX), rla).eval()


def make_baseline(cls: type, seed: int = 0) -> DirectRegressionWM | FeatureFlowWM:
    torch.manual_seed(seed)
    cfg = BaselineConfig(
        feature_dim=D,
        num_tokens=N,
        action_dim=A,
        max_horizon=H_MAX,
        width=32,
        heads=2,
        depth=1,
        flow_depth=1,
        encoder_fingerprint=FP,
    )
    return cls(cfg).eval()


def batch(b: int = 3, h: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, N, D, generator=g), torch.rand(b, h, A, generator=g) * 2 - 1


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
