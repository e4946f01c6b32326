"""Training pairs ``(s_t, s_{t+h}, a_{t:t+h})`` drawn from feature episodes.

Both the RLA autoencoder and the world model learn from *pairs* of frames a variable gap ``h``
apart plus the ``h`` actions between them (paper §2.3). :class:`PairSampler` draws them:

* the gap ``h`` is uniform in ``[min_gap, max_gap]``, clipped to the episode length;
* the start frame ``t`` is, with probability ``interaction_bias``, one of the episode's
  *interaction frames*, otherwise uniform over all valid starts.

The official code detects robot–object contact from simulator state; we only have features, so
"interaction" is defined generically: a frame is an interaction frame when the total feature motion
over the next ``max_gap`` steps, ``sum_{k=t}^{t+max_gap-1} mean|s_{k+1} - s_k|``, is in the top half
of its episode (``>=`` the episode median). Idle stretches (robot waiting, scene static) have almost
no feature motion and are therefore sampled rarely, which keeps the autoencoder from spending its
capacity on the trivial ``s_{t+h} = s_t`` case. Frames near the end of an episode see a shorter
look-ahead window and so score lower; that is harmless because they cannot start long gaps anyway.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PairSampler", "RowSampler", "interaction_frames"]


def interaction_frames(features: np.ndarray, window: int) -> np.ndarray:
    """Indices of the frames whose next-``window`` feature motion is in the top half.

    Args:
        features: ``(T+1, N, D)`` features of one episode.
        window: look-ahead in steps (``max_gap``).

    Returns:
        Sorted ``int64`` indices in ``[0, T)`` (empty when ``T == 0``).
    """
    t_len = len(features) - 1
    if t_len <= 0:
        return np.zeros(0, dtype=np.int64)
    # Per-step motion, accumulated in float64 so long episodes do not lose precision.
    step = np.empty(t_len, dtype=np.float64)
    for k in range(t_len):  # a loop bounds peak memory to one (N, D) difference at a time
        step[k] = np.abs(features[k + 1].astype(np.float32) - features[k].astype(np.float32)).mean()
    csum = np.concatenate([[0.0], np.cumsum(step)])
    starts = np.arange(t_len)
    motion = csum[np.minimum(starts + window, t_len)] - csum[starts]
    return starts[motion >= np.median(motion)].astype(np.int64)


class SeededStream:
    """A sampler's own ``numpy`` random stream, restartable and resumable by the trainer."""

    seed: int
    rng: np.random.Generator

    def reseed(self, seed: int) -> None:
        """Restart the random stream from ``seed`` (the trainer gives each DDP rank its own)."""
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        """Generator state, for exact resumption (plain Python types only)."""
        return {"seed": self.seed, "bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.seed = int(state["seed"])
        self.rng = np.random.default_rng(self.seed)
        self.rng.bit_generator.state = state["bit_generator"]


class PairSampler(SeededStream):
    """Random ``(s_t, s_{t+h}, a_{t:t+h})`` pairs from in-memory feature episodes.

    Episodes are kept as given (no copy; pass ``float16`` features to halve memory) and converted
    to ``float32`` only per batch. Episodes are chosen with probability proportional to their
    length, so every frame is equally likely a priori.

    Args:
        episodes: ``(features (T+1, N, D), actions (T, A))`` per episode; ``N``, ``D``, ``A`` must
            agree across episodes. Episodes shorter than ``min_gap`` steps are skipped.
        min_gap: smallest gap ``h`` (>= 1).
        max_gap: largest gap ``h``; also the padded action length ``H_max``.
        interaction_bias: probability of starting at an interaction frame (see module docstring).
        seed: seed of the sampler's own ``numpy`` generator; sampling is deterministic given it.
        history: above 0, every batch also holds ``s_prev``, the frame ``history`` steps before
            ``s_t`` (the episode's first frame when ``t < history``), for history world models.
            It changes no draw: the pairs are those of ``history=0``.
        siblings: groups of *sibling* pairs, each an ``int (m, 3)`` array of ``(episode, t, h)``
            rows (indices into ``episodes``) that start from one and the same real state under
            different actions (branch data, :func:`~rla_gym.data.feature_episodes.sibling_groups`).
            Gaps above ``max_gap`` are clipped; members of skipped episodes are dropped.
        sibling_fraction: share of every :meth:`sample` batch drawn as sibling pairs (two
            members of one group, rows ``2i`` and ``2i + 1`` of the batch; see its
            ``sibling_pairs``). ``0`` draws exactly as without ``siblings``.
        proprio: optional body vectors ``(T+1, P)`` per episode (aligned with ``episodes``;
            :mod:`rla_gym.data.proprio`); every batch then also holds ``p_t`` and ``p_th``. It
            changes no draw.

    Raises:
        ValueError: inconsistent shapes, bad gaps, or no episode long enough.
    """

    def __init__(
        self,
        episodes: Sequence[tuple[np.ndarray, np.ndarray]],
        min_gap: int,
        max_gap: int,
        interaction_bias: float = 0.9,
        seed: int = 0,
        history: int = 0,
        siblings: Sequence[np.ndarray] = (),
        sibling_fraction: float = 0.0,
        proprio: Sequence[np.ndarray] | None = None,
    ) -> None:
        if history < 0:
            raise ValueError(f"history must be >= 0 steps, got {history}")
        if not 0.0 <= sibling_fraction <= 1.0:
            raise ValueError(f"sibling_fraction must be in [0, 1], got {sibling_fraction}")
        self.history = history
        if not 1 <= min_gap <= max_gap:
            raise ValueError(
                f"need 1 <= min_gap <= max_gap, got min_gap={min_gap}, max_gap={max_gap}"
            )
        if not 0.0 <= interaction_bias <= 1.0:
            raise ValueError(f"interaction_bias must be in [0, 1], got {interaction_bias}")
        self.min_gap = min_gap
        self.max_gap = max_gap
        self.interaction_bias = interaction_bias
        self.features: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.interaction: list[np.ndarray] = []
        self.proprio: list[np.ndarray] | None = None if proprio is None else []
        if proprio is not None and len(proprio) != len(episodes):
            raise ValueError(f"{len(proprio)} proprio arrays for {len(episodes)} episodes")
        kept: dict[int, int] = {}
        for i, (feats, acts) in enumerate(episodes):
            feats, acts = np.asarray(feats), np.asarray(acts)
            if feats.ndim != 3 or acts.ndim != 2 or len(feats) != len(acts) + 1:
                raise ValueError(
                    f"episode {i}: expected features (T+1, N, D) and actions (T, A), got "
                    f"{feats.shape} and {acts.shape}"
                )
            if self.features and (
                feats.shape[1:] != self.features[0].shape[1:]
                or acts.shape[1] != self.actions[0].shape[1]
            ):
                raise ValueError(
                    f"episode {i}: features {feats.shape[1:]} / action dim {acts.shape[1]} differ "
                    f"from the first episode's {self.features[0].shape[1:]} / "
                    f"{self.actions[0].shape[1]}"
                )
            if len(acts) < min_gap:
                continue
            if self.proprio is not None:
                assert proprio is not None
                body = np.asarray(proprio[i], dtype=np.float32)
                if body.ndim != 2 or len(body) != len(feats):
                    raise ValueError(
                        f"episode {i}: proprio must have shape ({len(feats)}, P), got {body.shape}"
                    )
                self.proprio.append(body)
            kept[i] = len(self.features)
            self.features.append(feats)
            self.actions.append(acts)
            self.interaction.append(interaction_frames(feats, max_gap))
        if not self.features:
            raise ValueError(f"no episode has at least min_gap={min_gap} steps")
        lengths = np.array([len(a) for a in self.actions], dtype=np.float64)
        self._episode_p = lengths / lengths.sum()
        self.siblings = self._sibling_groups(siblings, kept)
        if sibling_fraction > 0 and not self.siblings:
            raise ValueError(
                "sibling_fraction > 0 needs groups of >= 2 sibling episodes (branch data: "
                "`rla-gym collect --policy branch`); none were given or kept"
            )
        self.sibling_fraction = sibling_fraction
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ properties
    @property
    def num_tokens(self) -> int:
        """``N``."""
        return int(self.features[0].shape[1])

    @property
    def feature_dim(self) -> int:
        """``D``."""
        return int(self.features[0].shape[2])

    @property
    def action_dim(self) -> int:
        """``A``."""
        return int(self.actions[0].shape[1])

    def _sibling_groups(
        self, groups: Sequence[np.ndarray], kept: dict[int, int]
    ) -> list[np.ndarray]:
        """``groups`` re-indexed to the kept episodes, gaps clipped to what every member has."""
        out = []
        for g in groups:
            rows = [
                (kept[int(e)], int(t), int(h))
                for e, t, h in np.asarray(g, dtype=np.int64).reshape(-1, 3)
                if int(e) in kept and t >= 0 and h >= self.min_gap
            ]
            rows = [r for r in rows if r[1] + r[2] <= len(self.actions[r[0]])]
            if len(rows) < 2:
                continue
            # Siblings must share the gap as well as the start.
            h = min(self.max_gap, *(r[2] for r in rows))
            out.append(np.array([(e, t, h) for e, t, _ in rows], dtype=np.int64))
        return out

    # ------------------------------------------------------------------ sampling
    def _draw_siblings(self, rng: np.random.Generator, pairs: int) -> list[tuple[int, int, int]]:
        """``2 * pairs`` triples, two distinct members of one random group per pair."""
        out: list[tuple[int, int, int]] = []
        for _ in range(pairs):
            g = self.siblings[int(rng.integers(len(self.siblings)))]
            for row in g[rng.choice(len(g), size=2, replace=False)]:
                out.append((int(row[0]), int(row[1]), int(row[2])))
        return out

    def _draw(self, rng: np.random.Generator, batch_size: int) -> list[tuple[int, int, int]]:
        """``(episode, start, gap)`` triples drawn from ``rng``."""
        out = []
        for _ in range(batch_size):
            e = int(rng.choice(len(self.actions), p=self._episode_p))
            t_len = len(self.actions[e])
            h = int(rng.integers(self.min_gap, min(self.max_gap, t_len) + 1))
            inter = self.interaction[e]
            # Draw both random numbers unconditionally so the stream advances identically.
            biased = rng.random() < self.interaction_bias
            u = rng.random()
            valid = inter[inter <= t_len - h] if biased else inter[:0]
            # Fall back to a uniform start when no interaction frame leaves room for the gap.
            t = int(valid[int(u * len(valid))]) if len(valid) else int(u * (t_len - h + 1))
            out.append((e, t, h))
        return out

    def _collate(self, triples: list[tuple[int, int, int]]) -> dict[str, torch.Tensor]:
        b = len(triples)
        s_t = np.empty((b, self.num_tokens, self.feature_dim), dtype=np.float32)
        s_th = np.empty_like(s_t)
        actions = np.zeros((b, self.max_gap, self.action_dim), dtype=np.float32)
        s_prev = np.empty_like(s_t) if self.history else None
        for i, (e, t, h) in enumerate(triples):
            s_t[i] = self.features[e][t]
            s_th[i] = self.features[e][t + h]
            actions[i, :h] = self.actions[e][t : t + h]
            if s_prev is not None:
                # Before the first frame the scene is at rest: the first frame stands in, as at a
                # dreamed reset.
                s_prev[i] = self.features[e][max(t - self.history, 0)]
        idx = np.asarray(triples, dtype=np.int64).reshape(b, 3)
        lengths = torch.from_numpy(idx[:, 2].copy())
        extra = {} if s_prev is None else {"s_prev": torch.from_numpy(s_prev)}
        if self.proprio is not None:
            body = self.proprio
            extra["p_t"] = torch.from_numpy(np.stack([body[e][t] for e, t, _ in triples]))
            extra["p_th"] = torch.from_numpy(np.stack([body[e][t + h] for e, t, h in triples]))
        return {
            **extra,
            "s_t": torch.from_numpy(s_t),
            "s_th": torch.from_numpy(s_th),
            "actions": torch.from_numpy(actions),
            "lengths": lengths,
            "action_mask": torch.arange(self.max_gap)[None, :] < lengths[:, None],
            "episode": torch.from_numpy(idx[:, 0].copy()),
            "start": torch.from_numpy(idx[:, 1].copy()),
        }

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A random batch of pairs.

        Args:
            batch_size: ``B``.

        Returns:
            Dict of CPU tensors:
            ``s_t`` ``float32 (B, N, D)``; ``s_th`` ``float32 (B, N, D)`` (frame ``t + h``);
            ``actions`` ``float32 (B, H_max, A)``, rows ``>= h`` zero; ``lengths`` ``int64 (B,)``
            the gap ``h``; ``action_mask`` ``bool (B, H_max)``; ``episode`` and ``start``
            ``int64 (B,)`` (episode index among the kept episodes, and ``t``); with
            ``history > 0`` also ``s_prev`` ``float32 (B, N, D)`` (frame ``max(t - history, 0)``);
            with ``proprio`` also ``p_t`` and ``p_th`` ``float32 (B, P)``;
            with ``sibling_fraction > 0`` also ``sibling_pairs`` (``int`` ``P``: rows ``2i`` and
            ``2i + 1``, ``i < P``, are siblings).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        pairs = int(self.sibling_fraction * batch_size) // 2
        if not pairs:
            return self._collate(self._draw(self.rng, batch_size))
        triples = self._draw_siblings(self.rng, pairs) + self._draw(
            self.rng, batch_size - 2 * pairs
        )
        return {**self._collate(triples), "sibling_pairs": pairs}

    def iter_eval(
        self, num_pairs: int = 256, batch_size: int = 64, seed: int = 12345
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Fixed validation batches: the same ``num_pairs`` pairs on every call.

        Pairs follow the training distribution but come from a private generator seeded with
        ``seed``, so they neither depend on nor disturb the training stream.

        Args:
            num_pairs: total pairs.
            batch_size: pairs per yielded batch (the last batch may be smaller).
            seed: seed of the fixed set.

        Yields:
            Batches in the format of :meth:`sample`.
        """
        triples = self._draw(np.random.default_rng(seed), num_pairs)
        for i in range(0, num_pairs, batch_size):
            yield self._collate(triples[i : i + batch_size])


class RowSampler(SeededStream):
    """Uniformly random rows of aligned arrays, as batches of ``float32`` tensors.

    For per-frame heads (progress, success) whose training examples are single frames rather than
    pairs; it satisfies :class:`rla_gym.utils.training.Sampler`, so :func:`fit` resumes it exactly.

    Args:
        arrays: name -> ``(M, ...)`` arrays with the same ``M`` (kept as given, converted per
            batch).
        seed: seed of the sampler's own ``numpy`` generator.

    Raises:
        ValueError: empty or misaligned arrays.
    """

    def __init__(self, arrays: dict[str, np.ndarray], seed: int = 0) -> None:
        sizes = {k: len(v) for k, v in arrays.items()}
        if not sizes or len(set(sizes.values())) != 1 or next(iter(sizes.values())) == 0:
            raise ValueError(f"arrays must be non-empty with one common length, got {sizes}")
        self.arrays = arrays
        self.size = next(iter(sizes.values()))
        self.reseed(seed)

    def _take(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.asarray(v[idx], np.float32)) for k, v in self.arrays.items()}

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``batch_size`` rows drawn with replacement."""
        return self._take(self.rng.integers(0, self.size, batch_size))

    def iter_all(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Every row once, in order (evaluation)."""
        for i in range(0, self.size, batch_size):
            yield self._take(np.arange(i, min(i + batch_size, self.size)))
