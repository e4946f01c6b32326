"""Counterfactual action-faithfulness: do different actions change the dream as they change reality?

Fidelity on recorded episodes cannot tell a model that listens to the action from one that
predicts a generic "motion from this state". This benchmark asks the counterfactual question
directly, per suite:

1. **Real starts.** Fresh held-out real episodes (the suite's scripted expert and its noisy
   variant, a collection seed none of the bundles was trained on) run without rendering; the exact
   simulator state (:meth:`~rla_gym.sims.base.SimAdapter.get_sim_state`) and the recorded actions
   are kept at chunk boundaries inside the dreamed env's horizon, and ``states`` of them are
   drawn.
2. **Real outcomes.** Each start is restored exactly and ``M`` different action sequences of
   ``max(horizons)`` chunks are executed from it: the recorded actions, the recorded actions plus
   Gaussian noise of each scale in ``noise_scales`` (normalised units, clipped to ``[-1, 1]``),
   and uniform random actions. Frames are rendered only at the start and at the chunk boundaries
   of ``horizons`` and encoded with the bundle's encoder.
3. **Dreamed outcomes.** The world model rolls out from the *encoded real start* with the same
   normalised actions, chunk by chunk as the env does (a world model with history also gets the
   encoded real frame one chunk before the start, restored and rendered like the start). The
   ``M`` outcomes of one start share the flow noise (common random numbers), so their
   differences come from the actions alone.

Metrics per horizon (features flattened over tokens and channels; ``real_i`` / ``dream_i`` are
the outcomes of sequence ``i`` from one start; pairs ``i < j`` of one start):

* ``direction``: mean cosine between ``real_i - real_j`` and ``dream_i - dream_j``;
* ``magnitude_ratio``: mean ``|dream_i - dream_j| / |real_i - real_j|``;
* ``ranking_spearman``: per start, Spearman between the real and the dreamed mean-L1 distances of
  the ``M`` outcomes to the aligned frame of the reference demo (the demo nearest to the
  episode's first frame, row ``t / K + h`` clipped to its length), averaged over starts;
* ``l1``: mean ``|dream_i - real_i|`` over all outcomes; ``copy_last_l1``: mean
  ``|start - real_i|`` (predicting "nothing changes").

For RLA-WM the **RLA ceiling** is reported beside: the world model's own RLA decoding the *true*
latent of each real one-chunk outcome, ``decode(s, encode(s, real_i))``, i.e. what a perfect
latent predictor would reach.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rla_gym.sims.policies import perturbed_sequences
from rla_gym.utils.stats import spearman

__all__ = [
    "CounterfactualConfig",
    "RealOutcomes",
    "RealStart",
    "dream_outcomes",
    "evaluate_suite",
    "measure_real",
    "outcome_metrics",
    "pair_agreement",
    "real_outcomes",
    "record_starts",
    "rla_ceiling_outcomes",
    "score_models",
    "score_rla_ceiling",
]

# One dreamed chunk: features (B, N, D), normalised chunks (B, K * A), a generator per row, the
# features one chunk earlier (B, N, D) -> features (B, N, D).
DreamStep = Callable[[torch.Tensor, np.ndarray, list[torch.Generator], torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class CounterfactualConfig:
    """What one suite's counterfactual measurement runs."""

    states: int = 40
    """Real start states (the targets are read at >= 30)."""
    episodes: int = 10
    """Held-out real episodes the starts are drawn from; even ones expert, odd ones noisy."""
    horizons: tuple[int, ...] = (1, 4)
    """Horizons in chunks of ``K`` control steps."""
    noise_scales: tuple[float, ...] = (0.1, 0.3)
    """Gaussian perturbations of the recorded actions (normalised action units)."""
    policy_noise: float = 0.3
    """Action noise of the noisy scripted policy (the data collector's default)."""
    collection_seed: int = 10_000
    """Episode ``e`` resets with seed ``collection_seed + e``; the bundles were collected with
    seeds derived from 0 (``rla-gym collect --seed 0``)."""
    seed: int = 0
    """Seed of the perturbations, random actions and flow noise."""
    flow_steps: int = 10
    """Euler steps per dreamed chunk (the env's default)."""
    batch_size: int = 64
    """Dreamed rows per world-model call."""

    def __post_init__(self) -> None:
        if self.states < 1 or self.episodes < 1:
            raise ValueError(
                f"states and episodes must be >= 1, got {self.states}, {self.episodes}"
            )
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"horizons must be chunk counts >= 1, got {self.horizons}")
        if any(s <= 0 for s in self.noise_scales):
            raise ValueError(f"noise_scales must be positive, got {self.noise_scales}")
        if self.flow_steps < 1 or self.batch_size < 1:
            raise ValueError("flow_steps and batch_size must be >= 1")

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Names of the ``M`` action sequences executed from every start, in order."""
        return ("recorded", *(f"recorded+noise{s:g}" for s in self.noise_scales), "random")


@dataclass(frozen=True)
class RealStart:
    """One real start state of the benchmark.

    Attributes:
        episode: index of the held-out episode it lies on.
        policy: ``"expert"`` or ``"noisy"``.
        t: control step within the episode (a multiple of ``K``).
        state: ``float64 (S,)`` exact simulator state (``get_sim_state``).
        recorded: ``float32 (H * K, A)`` normalised actions the policy took from here.
        previous: ``float64 (S,)`` the simulator state one chunk earlier (``state`` itself at
            ``t = 0``: the episode starts at rest).
    """

    episode: int
    policy: str
    t: int
    state: np.ndarray
    recorded: np.ndarray
    previous: np.ndarray


# --------------------------------------------------------------------------- metrics
def pair_agreement(real: np.ndarray, dream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and norm ratio of the outcome differences of one start, over pairs ``i < j``.

    Args:
        real: ``(M, N, D)`` real outcomes.
        dream: ``(M, N, D)`` dreamed outcomes of the same action sequences.

    Returns:
        ``(cosine (P,), ratio (P,))`` for the pairs whose real outcomes differ (a pair of
        identical real outcomes has no direction and is dropped). A dream that does not move at
        all between two sequences scores cosine 0 and ratio 0.
    """
    cos, ratio, keep = _pair_terms(real, dream)
    return cos[keep], ratio[keep]


def _pair_terms(real: np.ndarray, dream: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_agreement` over *every* pair ``i < j`` (``np.triu_indices`` order), with the
    mask of the pairs whose real outcomes differ (the others' ratio is ``nan``)."""
    m = real.shape[0]
    r, d = real.reshape(m, -1).astype(np.float64), dream.reshape(m, -1).astype(np.float64)
    i, j = np.triu_indices(m, k=1)
    dr, dd = r[i] - r[j], d[i] - d[j]
    nr, nd = np.linalg.norm(dr, axis=1), np.linalg.norm(dd, axis=1)
    keep = nr > 0
    dot = (dr * dd).sum(1)
    cos = np.divide(dot, nr * nd, out=np.zeros_like(dot), where=(nr * nd) > 0)
    ratio = np.divide(nd, nr, out=np.full_like(nd, np.nan), where=keep)
    return cos, ratio, keep


def _mean_l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference over the last two axes: ``(..., N, D)`` -> ``(...)``."""
    return np.abs(a - b).mean(axis=(-2, -1))


def outcome_metrics(
    start: np.ndarray,
    real: np.ndarray,
    dream: np.ndarray,
    reference: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The benchmark's metrics for one model and horizon.

    Args:
        start: ``(S, N, D)`` features of the real start states.
        real: ``(S, M, N, D)`` real outcomes.
        dream: ``(S, M, N, D)`` dreamed outcomes of the same sequences.
        reference: ``(S, N, D)`` aligned reference frame of every start (``None``: no ranking).
        names: the ``M`` action sequences' names, to break the direction down by pair.

    Returns:
        ``direction``, ``magnitude_ratio``, ``ranking_spearman`` (``None`` if no start has a
        defined rank correlation), ``l1``, ``copy_last_l1``, ``states``, the counts behind them
        (``pairs``, ``ranked_states``) and the standard errors of the first three over starts
        (``*_se``, from the per-start means; ``None`` below two starts). With ``names`` also
        ``direction_by_pair`` and ``real_distance_by_pair`` (``"<i>~<j>"`` -> the mean cosine, and
        the mean real norm of the outcome difference, over the starts where it is defined):
        how much of the direction comes from sequences that differ a lot (a random chunk) and
        how much from small perturbations of the recorded one.

    Raises:
        ValueError: inconsistent shapes.
    """
    if real.ndim != 4 or dream.shape != real.shape:
        raise ValueError(
            f"real and dream must both be (S, M, N, D), got {real.shape} and {dream.shape}"
        )
    s = real.shape[0]
    if start.shape != (s, *real.shape[2:]):
        raise ValueError(f"start must be (S, N, D) = {(s, *real.shape[2:])}, got {start.shape}")
    if reference is not None and reference.shape != start.shape:
        raise ValueError(
            f"reference must have the start's shape {start.shape}, got {reference.shape}"
        )
    if names is not None and len(names) != real.shape[1]:
        raise ValueError(f"names must name the {real.shape[1]} sequences, got {len(names)}")
    cos, ratio, rho, by_pair = [], [], [], []
    for k in range(s):
        c, r, keep = _pair_terms(real[k], dream[k])
        cos.append(c[keep])
        ratio.append(r[keep])
        by_pair.append(np.where(keep, c, np.nan))
        if reference is not None:
            value = spearman(_mean_l1(real[k], reference[k]), _mean_l1(dream[k], reference[k]))
            if value is not None:
                rho.append(value)
    cos_all, ratio_all = np.concatenate(cos), np.concatenate(ratio)
    extra: dict[str, Any] = {}
    if names is not None:
        i, j = np.triu_indices(len(names), k=1)
        pairs = [f"{names[a]}~{names[b]}" for a, b in zip(i, j, strict=True)]
        table = np.array(by_pair)  # (S, P), nan where the real outcomes coincide
        dist = np.array([np.linalg.norm((x[i] - x[j]).reshape(len(i), -1), axis=1) for x in real])
        extra = {
            "direction_by_pair": {p: _nanmean(table[:, q]) for q, p in enumerate(pairs)},
            "real_distance_by_pair": {p: float(dist[:, q].mean()) for q, p in enumerate(pairs)},
        }
    return {
        "direction": float(cos_all.mean()) if cos_all.size else None,
        "magnitude_ratio": float(ratio_all.mean()) if ratio_all.size else None,
        "ranking_spearman": float(np.mean(rho)) if rho else None,
        "l1": float(_mean_l1(dream, real).mean()),
        "copy_last_l1": float(_mean_l1(start[:, None], real).mean()),
        "states": int(s),
        "pairs": int(cos_all.size),
        "ranked_states": len(rho),
        "direction_se": _standard_error([c.mean() for c in cos if c.size]),
        "magnitude_ratio_se": _standard_error([r.mean() for r in ratio if r.size]),
        "ranking_spearman_se": _standard_error(rho),
        **extra,
    }


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def _standard_error(values: Sequence[float]) -> float | None:
    """Standard error of the mean of per-start values (starts are the independent units)."""
    v = np.asarray(values, np.float64)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size >= 2 else None


# --------------------------------------------------------------------------- real side
def record_starts(
    sim: Any,
    cfg: CounterfactualConfig,
    chunk: int,
    last_start_chunk: int,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[list[RealStart], np.ndarray]:
    """Run the held-out episodes (no rendering but each first frame) and draw the start states.

    Args:
        sim: the real simulator adapter.
        cfg: the benchmark config (episodes, states, seeds, horizons).
        chunk: ``K`` control steps per chunk.
        last_start_chunk: starts lie at chunks ``0 .. last_start_chunk`` (the dreamed env's
            horizon minus one).
        log: progress messages.

    Returns:
        ``(starts, first_frames uint8 (E, R, R, 3))``.
    """
    from rla_gym.sims.policies import ActionScale, make_policy

    scale = ActionScale(sim)
    max_h = max(cfg.horizons)
    n_chunks = last_start_chunk + max_h
    per_episode = math.ceil(cfg.states / cfg.episodes)
    if per_episode > last_start_chunk + 1:
        raise ValueError(
            f"{cfg.states} states from {cfg.episodes} episodes need {per_episode} starts per "
            f"episode, but an episode has only {last_start_chunk + 1} chunk boundaries in the "
            f"dreamed horizon; raise episodes"
        )
    rng = np.random.default_rng([cfg.seed, 1])
    starts: list[RealStart] = []
    first_frames = []
    for e in range(cfg.episodes):
        kind = "expert" if e % 2 == 0 else "noisy"
        seed = cfg.collection_seed + e
        obs = sim.reset(seed=seed)
        first_frames.append(obs.frame)
        policy = make_policy(kind, sim, seed=seed, noise=cfg.policy_noise)
        policy.reset(obs)
        states, actions = [], []
        for k in range(n_chunks * chunk):
            if k % chunk == 0 and k // chunk <= last_start_chunk:
                states.append(sim.get_sim_state())
            a = np.asarray(policy(obs), np.float32)
            actions.append(a)
            obs = sim.step(a, render=False)
        norm = scale.from_sim(np.stack(actions))
        picks = np.sort(rng.choice(last_start_chunk + 1, per_episode, replace=False))
        for c in picks:
            rec = norm[c * chunk : (c + max_h) * chunk]
            prev = states[max(int(c) - 1, 0)]
            starts.append(RealStart(e, kind, int(c) * chunk, states[c], rec, prev))
        log(f"  episode {e} ({kind}, seed {seed}): starts at chunks {picks.tolist()}")
    # Spread the cut evenly when states is not a multiple of episodes.
    keep = np.sort(rng.choice(len(starts), cfg.states, replace=False))
    return [starts[i] for i in keep], np.stack(first_frames)


def real_outcomes(
    sim: Any, start: RealStart, sequences: np.ndarray, chunk: int, horizons: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Restore ``start`` before each sequence and execute it, rendering only where measured.

    Args:
        sim: the adapter that recorded ``start``.
        start: the start state.
        sequences: ``float32 (M, H * K, A)`` normalised actions, ``H >= max(horizons)``.
        chunk: ``K``.
        horizons: chunk counts at which a frame is kept.

    Returns:
        ``(start_frame uint8 (R, R, 3), frames uint8 (M, len(horizons), R, R, 3))``.
    """
    from rla_gym.sims.policies import ActionScale

    scale = ActionScale(sim)
    at = {h * chunk: i for i, h in enumerate(horizons)}
    n_steps = max(horizons) * chunk
    frames = np.zeros((len(sequences), len(horizons), sim.resolution, sim.resolution, 3), np.uint8)
    start_frame = None
    for m, seq in enumerate(sequences):
        obs = sim.set_sim_state(start.state, render=m == 0)
        if m == 0:
            start_frame = obs.frame
        raw = scale.to_sim(seq[:n_steps])
        for k in range(n_steps):
            obs = sim.step(raw[k], render=(k + 1) in at)
            if (k + 1) in at:
                frames[m, at[k + 1]] = obs.frame
    assert start_frame is not None
    return start_frame, frames


# --------------------------------------------------------------------------- dream side
@torch.no_grad()
def dream_outcomes(
    step: DreamStep,
    start: np.ndarray,
    sequences: np.ndarray,
    chunk: int,
    horizons: Sequence[int],
    noise_seeds: np.ndarray,
    batch_size: int = 64,
    previous: np.ndarray | None = None,
) -> np.ndarray:
    """Roll a world model out from every start with every sequence, chunk by chunk.

    Args:
        step: one dreamed chunk (the env's ``DreamCore.dream`` or a baseline's ``predict``),
            called as ``step(s, actions, generators, s_prev)`` (``s_prev``: the state one chunk
            earlier, for world models with history).
        start: ``(S, N, D)`` encoded real start states.
        sequences: ``float32 (S, M, H * K, A)`` normalised actions.
        chunk: ``K``.
        horizons: chunk counts at which the dreamed state is kept.
        noise_seeds: ``(S,)`` flow-noise seed of every start; its ``M`` rows share it.
        batch_size: rows per world-model call.
        previous: ``(S, N, D)`` encoded real frames one chunk before the starts (``None``: at
            rest, the start stands in).

    Returns:
        ``float32 (S, M, len(horizons), N, D)``.
    """
    s, m = sequences.shape[:2]
    n_rows = s * m
    max_h = max(horizons)
    keep = {h: i for i, h in enumerate(horizons)}
    flat_seq = sequences.reshape(n_rows, -1, sequences.shape[-1])
    flat_start = np.repeat(start, m, axis=0)
    flat_prev = flat_start if previous is None else np.repeat(previous, m, axis=0)
    seeds = np.repeat(np.asarray(noise_seeds), m)
    out = np.zeros((n_rows, len(horizons), *start.shape[1:]), np.float32)
    for b0 in range(0, n_rows, batch_size):
        rows = slice(b0, min(b0 + batch_size, n_rows))
        gens = [torch.Generator().manual_seed(int(x)) for x in seeds[rows]]
        state = torch.from_numpy(flat_start[rows]).float()
        prev = torch.from_numpy(flat_prev[rows]).float()
        for h in range(1, max_h + 1):
            acts = flat_seq[rows, (h - 1) * chunk : h * chunk].reshape(len(gens), -1)
            state, prev = step(state, np.ascontiguousarray(acts, np.float32), gens, prev), state
            if h in keep:
                out[rows, keep[h]] = state.float().cpu().numpy()
    return out.reshape(s, m, len(horizons), *start.shape[1:])


@torch.no_grad()
def rla_ceiling_outcomes(
    rla: Any, start: np.ndarray, real: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """The RLA decoding the true latent of every real outcome: ``decode(s, encode(s, real))``.

    Args:
        rla: an RLA autoencoder (``encode``/``decode``).
        start: ``(S, N, D)``.
        real: ``(S, M, N, D)`` real outcomes.

    Returns:
        ``float32 (S, M, N, D)``.
    """
    s, m = real.shape[:2]
    s_t = torch.from_numpy(np.repeat(start, m, axis=0)).float()
    s_th = torch.from_numpy(real.reshape(s * m, *real.shape[2:])).float()
    out = [
        rla.decode(
            s_t[i : i + batch_size], rla.encode(s_t[i : i + batch_size], s_th[i : i + batch_size])
        )
        for i in range(0, s * m, batch_size)
    ]
    return torch.cat(out).cpu().numpy().reshape(real.shape)


# --------------------------------------------------------------------------- one suite
@dataclass
class RealOutcomes:
    """The real half of one suite's measurement, computed once and scored against any model.

    Attributes:
        bundle: the bundle whose simulator, encoder and reference demos were used.
        start: ``float32 (S, N, D)`` encoded real starts.
        real: ``float32 (S, M, len(horizons), N, D)`` encoded real outcomes.
        sequences: ``float32 (S, M, H * K, A)`` the normalised actions executed.
        reference: ``float32 (len(horizons), S, N, D)`` aligned reference frames.
        horizons: chunk counts of ``real``'s third axis.
        starts: per start ``{"episode", "policy", "t", "reference_demo"}``.
        seconds: wall-clock of the real and encoding parts.
        previous: ``float32 (S, N, D)`` encoded real frames one chunk before the starts (the
            start's own at ``t = 0``), for world models with history; ``None`` in files saved
            before it was recorded.
    """

    bundle: str
    start: np.ndarray
    real: np.ndarray
    sequences: np.ndarray
    reference: np.ndarray
    horizons: tuple[int, ...]
    starts: list[dict[str, Any]]
    seconds: dict[str, float]
    previous: np.ndarray | None = None

    def save(self, path: str | Path) -> None:
        """Write everything to one ``.npz`` (atomically), so later models skip the simulator."""
        import json

        from rla_gym.utils.io import atomic_path

        meta = {
            "bundle": self.bundle,
            "horizons": list(self.horizons),
            "starts": self.starts,
            "seconds": self.seconds,
        }
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                start=self.start,
                real=self.real,
                sequences=self.sequences,
                reference=self.reference,
                meta=np.array(json.dumps(meta)),
                **({} if self.previous is None else {"previous": self.previous}),
            )

    @classmethod
    def load(cls, path: str | Path) -> RealOutcomes:
        """Read :meth:`save`'s file."""
        import json

        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            return cls(
                meta["bundle"],
                z["start"],
                z["real"],
                z["sequences"],
                z["reference"],
                tuple(meta["horizons"]),
                meta["starts"],
                meta["seconds"],
                z["previous"] if "previous" in z.files else None,
            )


def measure_real(
    bundle: str | Path,
    cfg: CounterfactualConfig,
    *,
    encoder: Any = None,
    log: Callable[[str], None] = print,
) -> RealOutcomes:
    """Restore held-out real starts, execute the ``M`` sequences, encode (steps 1-2 above).

    Raises:
        EncoderMismatchError: ``encoder`` was made for other features than the bundle's.
    """
    from rla_gym.envs.artifacts import load_artifacts, nearest_demo
    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.features import check_fingerprint, encoder_from_fingerprint
    from rla_gym.sims.factory import make_sim

    art = load_artifacts(resolve_artifacts(str(bundle), ""))
    man = art.manifest
    k, fp = art.chunk, man["encoder_fingerprint"]
    encoder = encoder if encoder is not None else encoder_from_fingerprint(fp)
    check_fingerprint(fp, encoder.fingerprint, what=f"bundle {bundle}")
    last_start = int(art.max_episode_steps) - 1
    horizons = tuple(sorted(set(cfg.horizons)))

    t0 = time.perf_counter()
    sim = make_sim(man["sim"], man["task"], resolution=int(man["resolution"]))
    try:
        log(f"{man['sim']}/{man['task']}: {cfg.episodes} held-out episodes, {cfg.states} starts")
        starts, first_frames = record_starts(sim, cfg, k, last_start, log)
        rng = np.random.default_rng([cfg.seed, 2])
        sequences = np.stack(
            [perturbed_sequences(st.recorded, cfg.noise_scales, rng) for st in starts]
        )
        start_frames, frames, prev_frames = [], [], []
        for i, st in enumerate(starts):
            # The frame one chunk earlier, restored and rendered exactly like the start.
            prev_frames.append(sim.set_sim_state(st.previous, render=True).frame)
            f0, fr = real_outcomes(sim, st, sequences[i], k, horizons)
            start_frames.append(f0)
            frames.append(fr)
            if (i + 1) % 8 == 0 or i + 1 == len(starts):
                log(
                    f"  real outcomes: {i + 1}/{len(starts)} starts "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
    finally:
        sim.close()
    real_s = time.perf_counter() - t0

    # ---- encode every frame once
    t0 = time.perf_counter()
    s_n, m_n, h_n = len(starts), sequences.shape[1], len(horizons)
    frames_np = np.stack(frames)  # (S, M, H, R, R, 3)
    feats = encoder.encode(
        np.concatenate(
            [
                np.stack(start_frames),
                np.stack(prev_frames),
                first_frames,
                frames_np.reshape(-1, *frames_np.shape[3:]),
            ]
        )
    )
    start_f, prev_f = feats[:s_n], feats[s_n : 2 * s_n]
    first_f = feats[2 * s_n : 2 * s_n + len(first_frames)]
    real = feats[2 * s_n + len(first_frames) :].reshape(s_n, m_n, h_n, *feats.shape[1:])
    encode_s = time.perf_counter() - t0

    # ---- the reference frame each outcome is ranked against, chosen as the env does
    demos = [nearest_demo(first_f[e], art.reference[:, 0]) for e in range(len(first_f))]
    reference = []
    for h in horizons:
        rows = [min(st.t // k + h, int(art.reference_len[demos[st.episode]]) - 1) for st in starts]
        reference.append(
            np.stack(
                [art.reference[demos[st.episode], r] for st, r in zip(starts, rows, strict=True)]
            )
        )
    return RealOutcomes(
        str(bundle),
        start_f.astype(np.float32),
        real.astype(np.float32),
        sequences.astype(np.float32),
        np.stack(reference).astype(np.float32),
        horizons,
        [
            {
                "episode": st.episode,
                "policy": st.policy,
                "t": st.t,
                "reference_demo": demos[st.episode],
            }
            for st in starts
        ],
        {"real": real_s, "encode": encode_s},
        prev_f.astype(np.float32),
    )


def score_models(
    outcomes: RealOutcomes,
    cfg: CounterfactualConfig,
    models: dict[str, dict[str, Any]],
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Dream the same starts and sequences with every model and score them (step 3 above).

    Args:
        outcomes: :func:`measure_real`'s result.
        cfg: the measurement's config (flow steps, seed, batch size).
        models: name -> options of the dreamed env (:class:`~rla_gym.envs.RLAWorldConfig`
            fields, e.g. ``{}`` for the bundle's own model, ``{"world_model": ckpt}`` for another
            checkpoint, ``{"world_model": ckpt, "guidance": 2.0}``). Every model dreams through
            the env's own :meth:`DreamCore.dream`, so action scaling and noise are the env's.

    Returns:
        name -> ``{"<h>": metrics, ..., "rla_ceiling": metrics}`` (the ceiling for models that
        carry an RLA), plus ``"_seconds"`` per model.
    """
    from rla_gym.envs.rla_world import DreamCore, RLAWorldConfig

    start, real, horizons = outcomes.start, outcomes.real, outcomes.horizons
    noise_seeds = np.array([cfg.seed * 1_000_003 + i for i in range(len(start))])
    result: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, opts in models.items():
        t0 = time.perf_counter()
        core = DreamCore(
            RLAWorldConfig(artifacts=outcomes.bundle, flow_steps=cfg.flow_steps, **opts)
        )
        if core.history and outcomes.previous is None:
            raise ValueError(
                f"{name} is conditioned on the frame one chunk earlier, but these real outcomes "
                "were saved without it; measure them again (measure_real records it)"
            )
        dream = dream_outcomes(
            lambda s, a, g, p, c=core: c.dream(s, a, g, s_prev=p)[0],
            start,
            outcomes.sequences,
            core.chunk,
            horizons,
            noise_seeds,
            cfg.batch_size,
            outcomes.previous,
        )
        entry: dict[str, Any] = {
            str(h): outcome_metrics(
                start, real[:, :, hi], dream[:, :, hi], outcomes.reference[hi], cfg.outcomes
            )
            for hi, h in enumerate(horizons)
        }
        rla = getattr(core.model, "rla", None)
        if rla is not None and 1 in horizons:
            entry["rla_ceiling"] = score_rla_ceiling(outcomes, rla, cfg.batch_size, cfg.outcomes)
        seconds[name] = time.perf_counter() - t0
        result[name] = entry
        log(
            f"  {name}: "
            + "  ".join(
                f"h{h}: dir {entry[str(h)]['direction']:.3f} ratio "
                f"{entry[str(h)]['magnitude_ratio']:.3f}"
                for h in horizons
            )
            + f" ({seconds[name]:.0f} s)"
        )
    result["_seconds"] = seconds
    return result


def score_rla_ceiling(
    outcomes: RealOutcomes,
    rla: Any,
    batch_size: int = 64,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One-chunk metrics of ``rla`` decoding the true latent of every real outcome: what a
    perfect latent predictor on this RLA would reach (needs horizon 1 in ``outcomes``; ``names``
    as in :func:`outcome_metrics`)."""
    h1 = outcomes.horizons.index(1)
    real = outcomes.real[:, :, h1]
    ceiling = rla_ceiling_outcomes(rla, outcomes.start, real, batch_size)
    return {**outcome_metrics(outcomes.start, real, ceiling, outcomes.reference[h1], names),
            "horizon": "1",
            "what": "the RLA decoding the true latent of each real one-chunk outcome: "
                    "decode(s, encode(s, real))"}  # fmt: skip


def evaluate_suite(
    bundle: str | Path,
    cfg: CounterfactualConfig,
    *,
    direct: str | Path | None = None,
    encoder: Any = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure one bundle against its real simulator (see the module docstring).

    Args:
        bundle: the env's artifacts bundle (its manifest names simulator, task, encoder, chunk).
        cfg: what to run.
        direct: optional direct-regression checkpoint on the same encoder, measured on the same
            starts and outcomes as ``"direct"``.
        encoder: the bundle's encoder, already built (default: rebuilt from the manifest's
            fingerprint with default options).
        log: progress messages.

    Returns:
        ``{"rla-wm": {"1": metrics, "4": ..., "rla_ceiling": ...}, "direct": {...}?, "run":
        {...}}`` where ``run`` records the bundle, starts, outcome names and wall-clock.

    Raises:
        EncoderMismatchError: ``encoder`` or ``direct`` was made for other features.
    """
    t_all, cpu_all = time.perf_counter(), time.process_time()
    outcomes = measure_real(bundle, cfg, encoder=encoder, log=log)
    models: dict[str, dict[str, Any]] = {"rla-wm": {}}
    if direct is not None:
        models["direct"] = {"world_model": str(direct)}
    result = score_models(outcomes, cfg, models, log=log)
    from rla_gym.envs.artifacts import MANIFEST
    from rla_gym.utils.io import load_json

    man = load_json(Path(bundle) / MANIFEST)  # the run record needs no bank
    result["run"] = {
        "bundle": str(bundle),
        "bundle_created_utc": man["created_utc"],
        "sim": man["sim"],
        "task": man["task"],
        "encoder_fingerprint": man["encoder_fingerprint"],
        "chunk": man["chunk"],
        "horizons": list(outcomes.horizons),
        "outcomes": list(cfg.outcomes),
        "config": asdict(cfg),
        "direct_checkpoint": None if direct is None else str(direct),
        "starts": outcomes.starts,
        "episode_seeds": [cfg.collection_seed + e for e in range(cfg.episodes)],
        "noise": "the M outcomes of one start share their flow-noise seed",
        "wall_clock_s": {
            **outcomes.seconds,
            "dream": result.pop("_seconds"),
            "total": time.perf_counter() - t_all,
        },
        # Wall-clock depends on who else uses the cores; CPU time of this process does not.
        "cpu_s": time.process_time() - cpu_all,
    }
    return result
