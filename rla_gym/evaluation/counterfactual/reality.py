"""The real half of the counterfactual measurement: held-out real episodes, exact simulator
states at chunk boundaries, every action sequence executed from each restored state, the
outcomes encoded once (steps 1-2 of :mod:`rla_gym.evaluation.counterfactual`) and saved so that
later models are scored without the simulator."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rla_gym.evaluation.counterfactual.config import CounterfactualConfig
from rla_gym.sims.policies import perturbed_sequences

__all__ = ["RealOutcomes", "RealStart", "measure_real", "real_outcomes", "record_starts"]


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
    sim: Any,
    start: RealStart,
    sequences: np.ndarray,
    chunk: int,
    horizons: Sequence[int],
    bodies: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Restore ``start`` before each sequence and execute it, rendering only where measured.

    Args:
        sim: the adapter that recorded ``start``.
        start: the start state.
        sequences: ``float32 (M, H * K, A)`` normalised actions, ``H >= max(horizons)``.
        chunk: ``K``.
        horizons: chunk counts at which a frame is kept.
        bodies: if given, receives the raw proprio of the start ``(P_raw,)`` and then of every
            kept frame ``(M, len(horizons), P_raw)`` (free: the simulator reports it anyway).

    Returns:
        ``(start_frame uint8 (R, R, 3), frames uint8 (M, len(horizons), R, R, 3))``.
    """
    from rla_gym.sims.policies import ActionScale

    scale = ActionScale(sim)
    at = {h * chunk: i for i, h in enumerate(horizons)}
    n_steps = max(horizons) * chunk
    frames = np.zeros((len(sequences), len(horizons), sim.resolution, sim.resolution, 3), np.uint8)
    start_frame, start_body = None, None
    kept_body: np.ndarray | None = None
    for m, seq in enumerate(sequences):
        obs = sim.set_sim_state(start.state, render=m == 0)
        if m == 0:
            start_frame, start_body = obs.frame, np.asarray(obs.proprio, np.float32)
            kept_body = np.zeros((len(sequences), len(horizons), len(start_body)), np.float32)
        raw = scale.to_sim(seq[:n_steps])
        for k in range(n_steps):
            obs = sim.step(raw[k], render=(k + 1) in at)
            if (k + 1) in at:
                frames[m, at[k + 1]] = obs.frame
                kept_body[m, at[k + 1]] = obs.proprio  # type: ignore[index]
    assert start_frame is not None and start_body is not None and kept_body is not None
    if bodies is not None:
        bodies.extend([start_body, kept_body])
    return start_frame, frames


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
        body: the robot's body vectors (:mod:`rla_gym.data.proprio`): ``"start"`` ``(S, P)``,
            ``"previous"`` ``(S, P)`` and ``"real"`` ``(S, M, len(horizons), P)``; ``None`` in
            files saved before it was recorded or for a simulator without a body vector.
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
    body: dict[str, np.ndarray] | None = None

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
                **{f"body_{k}": v for k, v in (self.body or {}).items()},
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
                {k[5:]: z[k] for k in z.files if k.startswith("body_")} or None,
            )


def measure_real(
    bundle: str | Path,
    cfg: CounterfactualConfig,
    *,
    encoder: Any = None,
    log: Callable[[str], None] = print,
) -> RealOutcomes:
    """Restore held-out real starts, execute the ``M`` sequences, encode (protocol steps 1-2).

    Raises:
        EncoderMismatchError: ``encoder`` was made for other features than the bundle's.
    """
    from rla_gym.envs.artifacts import load_artifacts, nearest_demo, resolve_artifacts
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
        raw_body: dict[str, list[np.ndarray]] = {"start": [], "previous": [], "real": []}
        for i, st in enumerate(starts):
            # The frame one chunk earlier, restored and rendered exactly like the start.
            before = sim.set_sim_state(st.previous, render=True)
            prev_frames.append(before.frame)
            raw_body["previous"].append(np.asarray(before.proprio, np.float32))
            bodies: list[np.ndarray] = []
            f0, fr = real_outcomes(sim, st, sequences[i], k, horizons, bodies)
            raw_body["start"].append(bodies[0])
            raw_body["real"].append(bodies[1])
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
        _body_vectors(man["sim"], raw_body),
    )


def _body_vectors(sim: str, raw: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray] | None:
    """Raw proprio -> body vectors, or ``None`` for a simulator without a body vector."""
    from rla_gym.data.proprio import BODY_SPECS, body_vector

    if sim not in BODY_SPECS:
        return None
    return {k: body_vector(sim, np.stack(v)) for k, v in raw.items()}
