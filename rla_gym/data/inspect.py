"""Summarise a dataset and write an mp4 preview of some of its episodes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rla_gym.data.episodes import EpisodeStore

__all__ = ["summarize", "write_preview"]


def summarize(root: str | Path) -> dict[str, Any]:
    """Per-policy episode counts, success rates and lengths, plus cached feature sets."""
    store = EpisodeStore(root)
    manifest = store.manifest()
    per: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    act_min, act_max = None, None
    for eid in store.episode_ids():
        ep = store.read(eid, frames=False)
        pol = eid.rsplit("_", 1)[0]
        per[pol]["length"].append(ep.length)
        per[pol]["success"].append(bool(ep.success.any()))
        lo, hi = ep.actions.min(0), ep.actions.max(0)
        act_min = lo if act_min is None else np.minimum(act_min, lo)
        act_max = hi if act_max is None else np.maximum(act_max, hi)
    policies = {
        p: {
            "episodes": len(v["length"]),
            "success_rate": float(np.mean(v["success"])),
            "mean_length": float(np.mean(v["length"])),
            "steps": int(np.sum(v["length"])),
        }
        for p, v in sorted(per.items())
    }
    feats = {}
    if (store.root / "features").exists():
        for d in sorted((store.root / "features").iterdir()):
            if d.is_dir():
                feats[d.name] = {
                    "fingerprint": store.feature_fingerprint(d.name),
                    "episodes": len(list(d.glob("*.h5"))),
                }
    return {
        "root": str(store.root),
        "sim": manifest["sim"],
        "task": manifest["task"],
        "resolution": manifest["resolution"],
        "action_dim": manifest["action_dim"],
        "episodes": sum(p["episodes"] for p in policies.values()),
        "policies": policies,
        "action_range": None if act_min is None else [act_min.tolist(), act_max.tolist()],
        "features": feats,
    }


def write_preview(
    root: str | Path, out: str | Path, episodes: int = 4, fps: int = 20, scale: int = 2
) -> Path:
    """Write an mp4 with up to ``episodes`` episodes side by side (shorter ones hold their end).

    A red border marks frames where the task is solved.
    """
    import imageio.v2 as imageio

    store = EpisodeStore(root)
    ids = store.episode_ids()
    if not ids:
        raise ValueError(f"{root} has no episodes to preview")
    # Spread the picks across policies so the preview shows experts and non-experts alike.
    picks = [ids[round(i)] for i in np.linspace(0, len(ids) - 1, min(episodes, len(ids)))]
    eps = [store.read(e) for e in picks]
    t_max = max(len(e.frames) for e in eps)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(out, fps=fps, codec="libx264", quality=7, macro_block_size=1) as writer:
        for t in range(t_max):
            tiles = []
            for e in eps:
                i = min(t, len(e.frames) - 1)
                f = e.frames[i].copy()
                if e.success[i]:
                    f[:2], f[-2:], f[:, :2], f[:, -2:] = 255, 255, 255, 255
                    f[:2, :, 1:], f[-2:, :, 1:], f[:, :2, 1:], f[:, -2:, 1:] = 0, 0, 0, 0
                tiles.append(f)
            row = np.concatenate(tiles, axis=1)
            writer.append_data(np.repeat(np.repeat(row, scale, 0), scale, 1))
    return out
