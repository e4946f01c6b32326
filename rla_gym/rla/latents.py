"""Latent actions of many frame pairs from a frozen RLA encoder.

The world action model (paper §7) regresses, from ``s_t`` alone, the RLA latent ``z`` of
``(s_t, s_{t+K})``: these are its targets, computed once per dataset with the encoder half of a
trained :class:`~rla_gym.rla.RLAAutoencoder`.
"""

from __future__ import annotations

import numpy as np
import torch

from rla_gym.rla.model import RLAAutoencoder

__all__ = ["encode_pairs"]


@torch.no_grad()
def encode_pairs(
    model: RLAAutoencoder,
    s_t: np.ndarray | torch.Tensor,
    s_th: np.ndarray | torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``z = encode(s_t, s_th)`` for every pair, in batches (inputs may be float16).

    Args:
        model: a trained autoencoder (put in eval mode here; its weights are not changed).
        s_t: features at ``t``, ``(M, N, D)``.
        s_th: features at ``t + h``, ``(M, N, D)``.
        batch_size: pairs per forward pass (bounds memory).
        device: where the encoder runs.

    Returns:
        ``float32 (M, K, d)``.

    Raises:
        ValueError: the pair arrays differ in shape, or do not fit the autoencoder.

    Example:
        >>> from rla_gym.rla import RLAConfig
        >>> m = RLAAutoencoder(RLAConfig(feature_dim=8, num_tokens=4, width=16, depth=1))
        >>> encode_pairs(m, np.zeros((3, 4, 8), np.float16), np.ones((3, 4, 8))).shape
        (3, 8, 16)
    """
    if tuple(s_t.shape) != tuple(s_th.shape):
        raise ValueError(f"s_t and s_th shapes differ: {tuple(s_t.shape)} vs {tuple(s_th.shape)}")
    model = model.to(device).eval()
    c = model.config
    out = np.empty((s_t.shape[0], c.latent_tokens, c.latent_dim), np.float32)
    for start in range(0, s_t.shape[0], batch_size):
        a, b = (
            torch.as_tensor(np.asarray(x[start : start + batch_size]) if not torch.is_tensor(x)
                            else x[start : start + batch_size]).to(device, torch.float32)
            for x in (s_t, s_th)
        )  # fmt: skip
        out[start : start + len(a)] = model.encode(a, b).cpu().numpy()
    return out
