"""Cached feature episodes as training data: which dataset, encoder and split, and their loader.

The RLA autoencoder and the world models train on the same thing: the cached features of one
dataset's episodes with the actions between them, split into train and validation episodes by
episode-id hash. :class:`FeatureDataConfig` says which; :func:`load_split` loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

__all__ = [
    "FeatureDataConfig",
    "FeatureSplit",
    "branch_points",
    "load_body",
    "load_body_actions",
    "load_feature_episodes",
    "load_split",
    "sibling_groups",
]

Episodes = list[tuple[np.ndarray, np.ndarray]]
"""``[(features float16 (T+1, N, D), actions float32 (T, A)), ...]``."""


@dataclass(frozen=True, kw_only=True)
class FeatureDataConfig:
    """The training data of a model: cached features of one dataset, split by episode."""

    folder: Annotated[str, tyro.conf.arg(name="data")] = ""
    """Dataset folder (an ``EpisodeStore``; the flag is ``--data`` like every verb's); unused
    when episodes are passed in memory."""
    encoder: str = "opennsfw-resnet50-res4"
    """Name of the cached feature encoder (``features/<encoder>/`` in the dataset)."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for validation (split by episode-id hash, seeded with the
    trainer's seed; a bundle built from the model must use the same split)."""
    interaction_bias: float = 0.9
    """Probability of starting a training pair at an interaction frame (paper: 0.9)."""
    val_pairs: int = 256
    """Fixed validation pairs."""


@dataclass(frozen=True, kw_only=True)
class FeatureSplit:
    """Train and validation episodes, loaded by :func:`load_split` or built in memory.

    Attributes:
        train: training episodes ``[(features (T+1, N, D), actions (T, A)), ...]``.
        val: validation episodes (``None``: no validation).
        fingerprint: the encoder fingerprint shared by every episode (stored in checkpoints).
        grid: token grid ``(gh, gw)`` of the features (``None`` if unknown).
    """

    train: Sequence[tuple[np.ndarray, np.ndarray]]
    val: Sequence[tuple[np.ndarray, np.ndarray]] | None = None
    fingerprint: str = ""
    grid: tuple[int, int] | None = None
    train_ids: tuple[str, ...] = ()
    """Episode ids of ``train``, in order (empty for in-memory splits)."""
    train_proprio: Sequence[np.ndarray] | None = None
    """Body vectors ``(T+1, P)`` of ``train``'s episodes (``None``: not loaded)."""
    val_proprio: Sequence[np.ndarray] | None = None
    """Body vectors of ``val``'s episodes."""
    proprio_fields: tuple[str, ...] = ()
    """Names of the body vector's entries (:mod:`rla_gym.data.proprio`)."""


def load_feature_episodes(
    data: str | Path, encoder: str, ids: Sequence[str], fingerprint: str | None = None
) -> tuple[Episodes, str, tuple[int, int]]:
    """Load cached features of the given episodes.

    Features are kept in ``float16`` (their on-disk precision), which halves memory: the reference
    data (300 episodes x 200 frames x 64 x 512) is ~4 GB in float16 vs ~8 GB in float32.

    Args:
        data: dataset folder.
        encoder: encoder name.
        ids: episode ids.
        fingerprint: if given, every episode must have been encoded with it.

    Returns:
        ``(episodes, fingerprint, grid)``.

    Raises:
        EncoderMismatchError: episodes encoded with different encoders.
    """
    from rla_gym.data.episodes import EpisodeStore

    store = EpisodeStore(data)
    out: Episodes = []
    grid: tuple[int, int] = (0, 0)
    for eid in ids:
        fe = store.load_features(eid, encoder, expected_fingerprint=fingerprint)
        fingerprint = fe.fingerprint
        grid = fe.grid
        out.append((fe.features.astype(np.float16), fe.actions.astype(np.float32)))
    return out, fingerprint or "", grid


def load_body(data: str | Path, ids: Sequence[str]) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """The body vectors ``float32 (T+1, P)`` of the given episodes and the vector's field names.

    Raises:
        ValueError: a dataset whose simulator has no body vector, or an episode without proprio
            (every ``rla-gym collect`` records it).
    """
    bodies, _actions, fields = load_body_actions(data, ids)
    return bodies, fields


def load_body_actions(
    data: str | Path, ids: Sequence[str]
) -> tuple[list[np.ndarray], list[np.ndarray], tuple[str, ...]]:
    """:func:`load_body` plus each episode's actions ``float32 (T, A)`` (simulator units), from
    the same read of each episode.

    Raises:
        ValueError: as :func:`load_body`.
    """
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.data.proprio import body_spec, body_vector

    store = EpisodeStore(data)
    sim = str(store.manifest().get("sim", ""))
    spec = body_spec(sim)
    bodies, actions = [], []
    for eid in ids:
        episode = store.read(eid, frames=False)
        raw = episode.proprio
        if raw.ndim != 2 or raw.shape[1] == 0:
            raise ValueError(
                f"episode {eid} of {data} has no proprio; record the dataset with "
                f"`rla-gym collect --sim {sim} ...` (every collector records it)"
            )
        bodies.append(body_vector(sim, raw))
        actions.append(episode.actions.astype(np.float32))
    return bodies, actions, spec.fields


def load_split(cfg: FeatureDataConfig, seed: int, proprio: bool = False) -> FeatureSplit:
    """Split ``cfg.folder``'s episodes by ``cfg.val_fraction`` with ``seed`` and load both parts.

    Args:
        cfg: dataset, encoder and split.
        seed: the split's seed.
        proprio: also load the episodes' body vectors (:func:`load_body`).

    Raises:
        ValueError: no dataset folder given, or no episodes in it.
        EncoderMismatchError: episodes encoded with different encoders.
    """
    from rla_gym.data.episodes import EpisodeStore

    if not cfg.folder:
        raise ValueError("pass in-memory episodes or set the dataset folder (--data)")
    train_ids, val_ids = EpisodeStore(cfg.folder).split(cfg.val_fraction, seed=seed)
    if not train_ids:
        raise ValueError(f"no episodes in {cfg.folder}; run `rla-gym collect` first")
    train, fingerprint, grid = load_feature_episodes(cfg.folder, cfg.encoder, train_ids)
    val = (
        load_feature_episodes(cfg.folder, cfg.encoder, val_ids, fingerprint)[0] if val_ids else None
    )
    body: dict[str, object] = {}
    if proprio:
        train_p, fields = load_body(cfg.folder, train_ids)
        val_p = load_body(cfg.folder, val_ids)[0] if val_ids else None
        body = {"train_proprio": train_p, "val_proprio": val_p, "proprio_fields": fields}
    return FeatureSplit(
        train=train,
        val=val,
        fingerprint=fingerprint,
        grid=grid,
        train_ids=tuple(train_ids),
        **body,  # type: ignore[arg-type]
    )


def branch_points(
    data: str | Path, ids: Sequence[str]
) -> tuple[dict[tuple[str, int], list[str]], dict[str, int]]:
    """The branch episodes among ``ids``, per branch point.

    Branch data (``rla-gym collect --policy branch``) restores a trunk's state every few steps
    and runs several action chunks from it; each branch records ``branch_of`` (its trunk's id)
    and ``branch_step``, which is how they are told from trunks and other episodes.

    Args:
        data: dataset folder.
        ids: episode ids to read (their metadata only).

    Returns:
        ``({(trunk id, trunk step): [branch ids, in the order of ids]}, {id: length T})``, the
        points sorted.
    """
    from rla_gym.data.episodes import EpisodeStore

    store = EpisodeStore(data)
    lengths: dict[str, int] = {}
    points: dict[tuple[str, int], list[str]] = {}
    for eid in ids:
        ep = store.read(eid, frames=False)
        lengths[eid] = ep.length
        if "branch_of" in ep.meta:
            key = (str(ep.meta["branch_of"]), int(ep.meta["branch_step"]))
            points.setdefault(key, []).append(eid)
    return dict(sorted(points.items())), lengths


def sibling_groups(data: str | Path, ids: Sequence[str]) -> list[np.ndarray]:
    """Groups of episodes in ``ids`` that start from one exactly restored real state: per
    :func:`branch_points` point, the trunk's own window from that step plus its branches.

    Args:
        data: dataset folder.
        ids: episode ids, in the order of the episodes the groups index.

    Returns:
        One ``int64 (m, 3)`` array of ``(index into ids, start t, gap h)`` per branch point with
        at least two members in ``ids`` (``h``: the branch length).
    """
    index = {eid: i for i, eid in enumerate(ids)}
    points, lengths = branch_points(data, ids)
    out = []
    for (trunk, t), branches in points.items():
        h = min(lengths[b] for b in branches)
        rows = [(index[b], 0) for b in branches]
        if trunk in index and t + h <= lengths[trunk]:
            rows = [(index[trunk], t), *rows]
        if len(rows) >= 2:
            out.append(np.array([(e, s, h) for e, s in rows], dtype=np.int64))
    return out
