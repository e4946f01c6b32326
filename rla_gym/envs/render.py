"""Rendering a dreamed state: nearest real frame by pooled features, and video helpers.

RLA-WM predicts features, not pixels. Bundles that ship a frame decoder (:mod:`rla_gym.decoder`)
render dreamed features directly; the fallback here retrieves the real frame whose token-mean
features are closest (L2) among a small bank of real frames stored with the artifacts. It shows
roughly where the arm and objects are; it cannot show states that never occur in the bank, so
treat it as a debugging view.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["label", "nearest_frames", "panels", "resize_nearest", "side_by_side", "write_mp4"]


def nearest_frames(
    features: torch.Tensor, bank_pooled: torch.Tensor, bank_frames: np.ndarray
) -> np.ndarray:
    """Retrieve the closest bank frame for each state.

    Args:
        features: ``(B, N, D)`` states.
        bank_pooled: ``(F, D)`` token-mean features of the bank frames (same device).
        bank_frames: ``uint8 (F, h, w, 3)``.

    Returns:
        ``uint8 (B, h, w, 3)``.
    """
    idx = torch.cdist(features.float().mean(1), bank_pooled.float()).argmin(1).cpu().numpy()
    return bank_frames[idx]


def resize_nearest(frame: np.ndarray, size: int) -> np.ndarray:
    """``(h, w, C)`` -> ``(size, size, C)`` by nearest-neighbour sampling."""
    h, w = frame.shape[:2]
    ys = (np.arange(size) * h / size).astype(int)
    xs = (np.arange(size) * w / size).astype(int)
    return frame[ys][:, xs]


def panels(frames: Sequence[np.ndarray], size: int = 128, gap: int = 4) -> np.ndarray:
    """``uint8 (h, w, 3)`` frames resized to ``size`` and joined left to right with white gaps."""
    sep = np.full((size, gap, 3), 255, np.uint8)
    out: list[np.ndarray] = []
    for i, f in enumerate(frames):
        out += [sep] if i else []
        out.append(resize_nearest(f, size))
    return np.concatenate(out, 1)


def side_by_side(left: np.ndarray, right: np.ndarray, size: int = 128, gap: int = 4) -> np.ndarray:
    """Two ``uint8 (h, w, 3)`` frames resized to ``size`` and joined with a white gap."""
    return panels([left, right], size, gap)


def label(frame: np.ndarray, value: float, width: int = 4) -> np.ndarray:
    """Draw a bar of length ``value`` in ``[0, 1]`` along the bottom (a font-free annotation)."""
    out = frame.copy()
    n = int(np.clip(value, 0.0, 1.0) * out.shape[1])
    out[-width:, :n] = (255, 200, 0)
    return out


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: int = 4) -> Path:
    """Write ``uint8 (h, w, 3)`` frames as an H.264 mp4 (imageio + ffmpeg)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1: thumbnails are not multiples of 16 px, and padding would shift them.
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as w:
        for f in frames:
            w.append_data(np.ascontiguousarray(f))
    return path
