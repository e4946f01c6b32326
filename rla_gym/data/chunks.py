"""Action-chunk samples for behaviour cloning: ``(s_t, a_{t:t+K}, s_{t+K})`` from cached features.

A policy acting in a dreamed env (and in the real simulator through
:mod:`rla_gym.evaluation.real`) decides every ``K`` control steps and outputs the whole chunk, so
its supervised data is every frame ``t`` of an episode paired with the next ``K`` actions. The
frame ``K`` steps later rides along because the world action model (paper §7) regresses the RLA
latent of ``(s_t, s_{t+K})``. Actions are mapped to ``[-1, 1]`` with the dataset's bounds, the
space the envs and policies use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rla_gym.data.episodes import EpisodeStore
from rla_gym.data.feature_episodes import load_body

__all__ = ["ChunkData", "load_chunks", "normalize_actions"]


@dataclass(frozen=True)
class ChunkData:
    """``M`` chunk samples (features kept in float16 to halve memory).

    Attributes:
        obs: ``float16 (M, N, D)`` features at the decision frame ``t``.
        actions: ``float32 (M, K * A)`` the next ``K`` actions, normalised to ``[-1, 1]`` and
            flattened row-major from ``(K, A)``; ``nan`` rows where the episode had no actions
            (see ``has_actions``).
        next_obs: ``float16 (M, N, D)`` features at frame ``t + K``.
        has_actions: ``bool (M,)`` whether the row's actions may be used (``False`` for episodes
            treated as action-free videos).
        episode: ``int64 (M,)`` index into ``episode_ids``.
        episode_ids: the episodes the rows came from.
        chunk: ``K``.
        body: ``float32 (M, P)`` the robot's body vector (:mod:`rla_gym.data.proprio`) at the
            decision frame, when asked for (``None`` otherwise).
        body_fields: its field names (empty without it).
    """

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    has_actions: np.ndarray
    episode: np.ndarray
    episode_ids: tuple[str, ...]
    chunk: int
    body: np.ndarray | None = None
    body_fields: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.obs)


def normalize_actions(
    actions: np.ndarray, low: Sequence[float], high: Sequence[float]
) -> np.ndarray:
    """Simulator units -> ``[-1, 1]`` (clipped; a degenerate dimension maps to 0)."""
    lo, hi = np.asarray(low, np.float32), np.asarray(high, np.float32)
    half = np.where(hi > lo, (hi - lo) / 2, 1.0)
    return np.clip((actions - (hi + lo) / 2) / half, -1.0, 1.0).astype(np.float32)


def load_chunks(
    store: EpisodeStore | str,
    episode_ids: Sequence[str],
    chunk: int = 8,
    encoder: str = "opennsfw-resnet50-res4",
    action_free: Sequence[str] = (),
    stride: int = 1,
    body: bool = False,
) -> ChunkData:
    """Every decision frame ``t = 0, stride, ...`` with ``t + K <= T`` of the given episodes.

    Args:
        store: the dataset (or its folder).
        episode_ids: episodes to read (with cached ``encoder`` features).
        chunk: ``K`` control steps per decision.
        encoder: name of the cached features.
        action_free: ids among ``episode_ids`` whose actions are withheld (``has_actions``
            False, actions ``nan``): the "video only" part of a mixed dataset.
        stride: distance between decision frames.
        body: also read every row's body vector (from the episodes' recorded proprio).

    Raises:
        ValueError: ``chunk``/``stride`` < 1, or no episode is long enough for one chunk.
        KeyError, EncoderMismatchError: missing or inconsistent feature caches.
    """
    if chunk < 1 or stride < 1:
        raise ValueError(f"chunk and stride must be >= 1, got {chunk} and {stride}")
    store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
    man = store.manifest()
    fingerprint = store.feature_fingerprint(encoder)
    free = set(action_free)
    unknown = free - set(episode_ids)
    if unknown:
        raise ValueError(f"action_free ids not among episode_ids: {sorted(unknown)[:3]}")
    obs, nxt, act, has, epi, kept, times = [], [], [], [], [], [], []
    for eid in episode_ids:
        fe = store.load_features(eid, encoder, expected_fingerprint=fingerprint)
        t_max = len(fe.actions) - chunk
        if t_max < 0:
            continue
        ts = np.arange(0, t_max + 1, stride)
        a = normalize_actions(fe.actions, man["action_low"], man["action_high"])
        windows = np.stack([a[t : t + chunk].reshape(-1) for t in ts])
        if eid in free:
            windows[:] = np.nan
        obs.append(fe.features[ts].astype(np.float16))
        nxt.append(fe.features[ts + chunk].astype(np.float16))
        act.append(windows)
        has.append(np.full(len(ts), eid not in free))
        epi.append(np.full(len(ts), len(kept), np.int64))
        kept.append(eid)
        times.append(ts)
    if not kept:
        raise ValueError(f"no episode among {len(episode_ids)} has at least {chunk} actions")
    bodies, fields = None, ()
    if body:  # every kept episode's body at its decision frames, read in one pass
        vecs, fields = load_body(store.root, kept)
        bodies = np.concatenate([v[ts] for v, ts in zip(vecs, times, strict=True)])
    return ChunkData(
        obs=np.concatenate(obs),
        actions=np.concatenate(act),
        next_obs=np.concatenate(nxt),
        has_actions=np.concatenate(has),
        episode=np.concatenate(epi),
        episode_ids=tuple(kept),
        chunk=chunk,
        body=bodies,
        body_fields=fields,
    )
