"""Cache encoder features for every episode of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rla_gym.data.episodes import EpisodeStore
from rla_gym.features.base import FeatureEncoder

__all__ = ["encode_dataset"]


def encode_dataset(
    root: str | Path, encoder: FeatureEncoder, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Encode the frames of every episode that has no cached features for ``encoder`` yet.

    Features go to ``features/<encoder.name>/<episode>.h5`` (float16) with the fingerprint.

    Raises:
        EncoderMismatchError: features of a different fingerprint exist and ``overwrite`` is false.
    """
    store = EpisodeStore(root)
    manifest = store.manifest()
    res = int(manifest["resolution"])
    grid = encoder.grid_shape(res, res)  # fail before any work on an incompatible resolution
    store.clean_partial()
    store.begin_features(encoder.name, encoder.fingerprint, overwrite=overwrite)
    ids = store.episode_ids()
    todo = [i for i in ids if not store.has_features(i, encoder.name)]
    frames_done = 0
    for eid in tqdm(todo, desc=f"encode {encoder.name}", disable=not progress):
        ep = store.read(eid)
        feats = encoder.encode(ep.frames)
        store.write_features(eid, encoder.name, feats, encoder.fingerprint, grid)
        frames_done += len(ep.frames)
    return {
        "encoded": len(todo),
        "skipped": len(ids) - len(todo),
        "frames": frames_done,
        "fingerprint": encoder.fingerprint,
        "grid": list(grid),
        "feature_dim": encoder.feature_dim,
    }
