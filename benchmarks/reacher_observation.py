"""Which reacher observation makes the action recoverable? A linear inverse-dynamics probe.

For each camera variant (field of view x resolution) the same reacher episodes are rendered,
encoded with the frozen encoder, and a ridge probe predicts a chunk's mean action (2 torques) from
the features of frames around it. If a *linear* probe cannot recover the action from
``[f(s_t), f(s_{t+K})]``, the dream has little chance of following actions either.

Probe inputs, by frame offsets relative to the chunk start ``t`` (chunk = actions ``t..t+K-1``):

- ``now``: ``[f(s_t)]``, a control: it can only predict what the *policy* would do in ``s_t``
  (the scripted expert's torque is a function of the state), not what was done;
- ``pair``: ``[f(s_t), f(s_{t+K})]``, the dream's own view of one transition;
- ``history``: ``[f(s_{t-K}), f(s_t), f(s_{t+K})]``; reacher is torque-driven, so an action shows
  as a change of *velocity*, which needs the frame before ``s_t`` as well.

Two controls keep the probe honest. The same probe on the raw **pixels** of the same frames (RGB in
``[0, 1]``, flattened): the frames hold the arm's pose exactly, so a probe that fails on pixels too
is limited by being linear, not by what the features keep. And a **pose probe**: ridge from one
frame's reduced features (or pixels) to the arm's pose (sine and cosine of both joint angles and
the finger's position in the plane), which asks whether the pose itself, rather than its small
change within a chunk, is linearly readable.

Features are reduced per frame (mean over patches, or all patches flattened) to ``pca_dim`` with a
PCA fitted on the training episodes' frames only; the probe input concatenates the frames'
projections. Ridge on standardised inputs, alpha picked from ``alphas`` on a validation split of the
training episodes (by episode), then refitted on all training episodes. Test episodes (by episode,
stratified by policy) are never seen by PCA, scaler or alpha choice. The same probe on the true
joint state (angles + velocities, or angles only) is the ceiling of a perfect observation. R² is
also reported on the random-torque test episodes alone: there the action is independent of the
state, so only the dynamics can reveal it.

Episodes are driven by the project's scripted policies (noisy expert and uniform random torques)
for a fixed number of control steps, and kept in memory. Dynamics do not depend on the camera, so
every variant replays identical trajectories (checked), which makes the variants a paired
comparison. Only every ``frame_every``-th frame is rendered and encoded (chunk starts fall on
those frames): a software-rendered reacher frame costs ~40 ms of CPU whatever the resolution.
Issue #10 asked for this measurement before changing the observation.

    python benchmarks/reacher_observation.py
    python benchmarks/reacher_observation.py --variants 45@128 38@128 --noisy-episodes 10
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tyro

from rla_gym.evaluation.real import RealEvalConfig
from rla_gym.evaluation.scripted import run_scripted_episode
from rla_gym.features import DEFAULT_ENCODER, make_encoder
from rla_gym.features.base import FeatureEncoder
from rla_gym.sims.dmc import DMCSim
from rla_gym.utils import provenance, save_json

# Frame offsets (in chunks of K control steps, relative to the chunk start) of each probe input.
INPUTS: dict[str, tuple[int, ...]] = {"now": (0,), "pair": (0, 1), "history": (-1, 0, 1)}
# What the pose probe reads from one frame.
POSE_TARGETS = ("sin_shoulder", "sin_wrist", "cos_shoulder", "cos_wrist", "finger_x", "finger_y")

# Reacher's fixed camera sits 0.75 m above the floor; the arm moves in the plane z = 0.01 m.
_CAMERA_TO_ARM_M = 0.74


@dataclass(frozen=True)
class Args:
    task: str = "reacher-easy"
    """dm-control task"""
    variants: tuple[str, ...] = ("45@128", "38@128", "45@192", "38@192")
    """camera variants as ``FOVY@RESOLUTION`` (degrees @ pixels); 45 is the task's own camera, 38
    the narrowest that still shows the whole reachable disc (0.25 m: finger at full stretch, or the
    edge of the farthest target)"""
    noisy_episodes: int = 30
    """episodes of the noisy scripted expert"""
    random_episodes: int = 30
    """episodes of uniform random torques"""
    noise: float = 0.3
    """action-noise scale of the noisy expert"""
    steps: int = 80
    """control steps per episode (no early stop at success)"""
    chunk: int = 8
    """K: control steps per chunk (the dreamed env's step)"""
    frame_every: int = 2
    """render a frame every this many control steps; chunk starts are these frames"""
    pca_dim: int = 64
    """PCA components per frame"""
    test_fraction: float = 0.25
    """fraction of each policy's episodes held out for testing"""
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
    """ridge penalties tried on the validation split (inputs standardised)"""
    encoder: str = DEFAULT_ENCODER
    """frozen encoder"""
    threads: int = 1
    """encoder threads (the machine is shared)"""
    seed: int = 0
    """seeds episodes, policies, the split and the randomised PCA"""
    out: Path = Path("benchmarks/results/reacher_observation.json")

    def __post_init__(self) -> None:
        if self.chunk % self.frame_every or self.steps % self.frame_every:
            raise ValueError("chunk and steps must be multiples of frame_every")
        if self.steps < 2 * self.chunk:
            raise ValueError("steps must hold at least two chunks (history + one ahead)")


@dataclass(frozen=True)
class Rollouts:
    """Episodes of one camera variant; ``E`` episodes of ``T`` control steps."""

    frames: np.ndarray
    """``uint8 (E, T/frame_every + 1, H, W, 3)``: the frames of steps 0, frame_every, ..."""
    actions: np.ndarray
    """``float32 (E, T, A)``"""
    proprio: np.ndarray
    """``float32 (E, T+1, 4)``: joint angles (2) + joint velocities (2)"""
    finger: np.ndarray
    """``float64 (E, T+1, 2)``: finger position in the plane, metres"""
    kinds: np.ndarray
    """``str (E,)``: the policy of each episode"""


def parse_variant(spec: str) -> tuple[float, int]:
    """``"38@128"`` -> ``(38.0, 128)``."""
    fovy, sep, res = spec.partition("@")
    if not sep:
        raise ValueError(f"variant must look like FOVY@RESOLUTION (e.g. 38@128), got {spec!r}")
    return float(fovy), int(res)


def collect(args: Args, fovy: float, resolution: int) -> Rollouts:
    """Run every episode of ``args`` in a simulator rendering at ``fovy`` / ``resolution``.

    Through the package's one scripted-policy loop (:func:`run_scripted_episode`): episode ``i``
    and its policy are seeded with ``args.seed * 100_003 + i``, it runs ``args.steps`` control
    steps without stopping at success, and the camera renders every ``frame_every``-th step.
    """
    sim = DMCSim(args.task, resolution=resolution, fovy=fovy, max_steps=args.steps)
    plan = ["noisy"] * args.noisy_episodes + ["random"] * args.random_episodes
    cfg = RealEvalConfig(
        sim="dmc", task=args.task, resolution=resolution, chunk=args.frame_every,
        max_steps=args.steps, seed=args.seed * 100_003,
    )  # fmt: skip
    try:
        eps = [
            run_scripted_episode(
                sim,
                kind,
                i,
                cfg,
                args.noise,
                frames="chunks",
                stop_on_success=False,
                state_keys=("finger_pos",),
            )
            for i, kind in enumerate(plan)
        ]
    finally:
        sim.close()
    return Rollouts(
        frames=np.stack([e["frames"] for e in eps]),
        actions=np.stack([e["actions"] for e in eps]),
        proprio=np.stack([e["proprio"] for e in eps]),
        finger=np.stack([e["state"]["finger_pos"] for e in eps]),
        kinds=np.asarray(plan),
    )


def encode(encoder: FeatureEncoder, frames: np.ndarray) -> np.ndarray:
    """``uint8 (E, F, H, W, 3)`` -> ``float16 (E, F, N, D)`` (float16 halves the memory)."""
    e, t = frames.shape[:2]
    out = [encoder.encode(ep).astype(np.float16) for ep in frames]
    return np.stack(out).reshape(e, t, *out[0].shape[1:])


def split_episodes(kinds: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``bool (E,)``: True for test episodes, ``fraction`` of each policy's episodes."""
    test = np.zeros(len(kinds), bool)
    for kind in np.unique(kinds):
        idx = rng.permutation(np.flatnonzero(kinds == kind))
        test[idx[: max(1, round(fraction * len(idx)))]] = True
    return test


def pca_fit(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions of ``x`` ``(n, d)``: ``(mean (d,), components (k, d))``.

    Randomised (Halko et al. 2011) with 4 power iterations: flattened patches have d = N * 512 up
    to 73k, where an exact decomposition would cost minutes of the shared cores.
    """
    mean = x.mean(0)
    xc = x - mean
    q, _ = np.linalg.qr(xc @ rng.standard_normal((x.shape[1], k + 16)).astype(x.dtype))
    for _ in range(4):
        q, _ = np.linalg.qr(xc @ (xc.T @ q))
    _, _, vt = np.linalg.svd(q.T @ xc, full_matrices=False)
    return mean, vt[:k]


def project(
    feats: np.ndarray, train: np.ndarray, k: int, rng: np.random.Generator, rows: int = 512
) -> np.ndarray:
    """Per-frame PCA: ``(E, T', F)`` -> ``float32 (E, T', k)``, fitted on ``train`` episodes."""
    e, t, f = feats.shape
    mean, comp = pca_fit(feats[train].reshape(-1, f).astype(np.float32), k, rng)
    flat = feats.reshape(-1, f)
    # In blocks: a float32 copy of all flattened patches would double the peak memory.
    out = np.concatenate(
        [(flat[i : i + rows].astype(np.float32) - mean) @ comp.T for i in range(0, len(flat), rows)]
    )
    return out.reshape(e, t, k)


def chunk_samples(
    per_frame: np.ndarray, actions: np.ndarray, chunk: int, every: int, offsets: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Probe samples of every rendered chunk start ``t`` with room for one chunk of history and
    one ahead (the same ``t`` for every input set, so their scores are comparable).

    Args:
        per_frame: ``(E, T/every + 1, F)`` per-frame inputs of steps ``0, every, 2 every, ...``.
        actions: ``(E, T, A)``.
        chunk: K.
        every: control steps between frames.
        offsets: frame offsets in chunks, e.g. ``(-1, 0, 1)``.

    Returns:
        ``x (E, n, len(offsets) * F)`` and ``y (E, n, A)``, the mean action of each chunk.
    """
    steps = actions.shape[1]
    starts = np.arange(chunk, steps - chunk + 1, every)
    x = np.concatenate([per_frame[:, (starts + o * chunk) // every] for o in offsets], axis=-1)
    y = np.stack([actions[:, t : t + chunk].mean(1) for t in starts], axis=1)
    return x, y


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    """Ridge on standardised ``x (n, F)`` -> ``y (n, A)``; returns ``(mu, sd, w, b)``."""
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean(0)))
    return mu, sd, w, y.mean(0)


def ridge_predict(model: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    mu, sd, w, b = model
    return ((x - mu) / sd) @ w + b


def r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per output column ``(A,)`` (0 = predicting the mean)."""
    return 1.0 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def validation_split(
    kinds: np.ndarray, test: np.ndarray, args: Args, rng: np.random.Generator
) -> np.ndarray:
    """``bool (E,)``: the training episodes ``alpha`` is chosen on (a ``test_fraction`` of each
    policy's training episodes); the ridge is fitted on the other training episodes meanwhile."""
    train_ids = np.flatnonzero(~test)
    val = np.zeros(len(test), bool)
    val[train_ids] = split_episodes(kinds[train_ids], args.test_fraction, rng)
    return val


def _rows(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples of the episodes in ``mask``: ``(E, n, F)``, ``(E, n, A)`` -> rows."""
    return x[mask].reshape(-1, x.shape[-1]), y[mask].reshape(-1, y.shape[-1])


def score(
    model: tuple[np.ndarray, ...], x: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """R² per output ``(A,)`` of ``model`` on the episodes in ``mask``."""
    x_m, y_m = _rows(x, y, mask)
    return r2(y_m, ridge_predict(model, x_m))


def fit_ridge_probe(
    x: np.ndarray, y: np.ndarray, val: np.ndarray, test: np.ndarray, alphas: tuple[float, ...]
) -> tuple[float, tuple[np.ndarray, ...]]:
    """Ridge from ``x (E, n, F)`` to ``y (E, n, A)``: the alpha with the best mean R² on ``val``
    when fitted on the other training episodes, then the model refitted on every training episode.
    """
    fit = ~test & ~val
    val_r2 = {a: float(score(ridge_fit(*_rows(x, y, fit), a), x, y, val).mean()) for a in alphas}
    alpha = max(val_r2, key=val_r2.__getitem__)
    return alpha, ridge_fit(*_rows(x, y, ~test), alpha)


def probe(
    per_frame: np.ndarray,
    ro: Rollouts,
    test: np.ndarray,
    args: Args,
    rng: np.random.Generator,
) -> dict[str, dict]:
    """Fit and score the probe for every input set of :data:`INPUTS`.

    Args:
        per_frame: ``(E, T/frame_every + 1, F)`` per-frame inputs (already reduced).
        ro: the episodes (actions, policy kinds).
        test: ``bool (E,)`` held-out episodes.
        args: chunk size and alpha grid.
        rng: draws the validation split (one for every input set).
    """
    val = validation_split(ro.kinds, test, args, rng)
    results = {}
    for name, offsets in INPUTS.items():
        x, y = chunk_samples(per_frame, ro.actions, args.chunk, args.frame_every, offsets)
        alpha, model = fit_ridge_probe(x, y, val, test, args.alphas)
        test_r2 = score(model, x, y, test)
        res = {"alpha": alpha, "r2": [round(float(v), 3) for v in test_r2]}
        res["r2_mean"] = round(float(test_r2.mean()), 3)
        for kind in np.unique(ro.kinds):
            held = test & (ro.kinds == kind)
            res[f"r2_mean_{kind}"] = round(float(score(model, x, y, held).mean()), 3)
        results[name] = res
    return results


def pose_targets(ro: Rollouts, every: int) -> np.ndarray:
    """``(E, T/every + 1, 6)``: sin, cos of both joint angles and the finger's (x, y) in metres."""
    q = ro.proprio[:, ::every, :2].astype(np.float64)
    return np.concatenate([np.sin(q), np.cos(q), ro.finger[:, ::every]], axis=-1)


def pose_probe(
    per_frame: np.ndarray, pose: np.ndarray, kinds: np.ndarray, test: np.ndarray, args: Args,
    rng: np.random.Generator,
) -> dict:  # fmt: skip
    """Ridge from one frame's reduced inputs ``(E, T', F)`` to its pose ``(E, T', 6)``; held-out R²
    per target and their mean (alpha chosen on a validation split of the training episodes)."""
    val = validation_split(kinds, test, args, rng)
    alpha, model = fit_ridge_probe(per_frame, pose, val, test, args.alphas)
    test_r2 = score(model, per_frame, pose, test)
    return {"alpha": alpha, "targets": list(POSE_TARGETS),
            "r2": [round(float(v), 3) for v in test_r2],
            "r2_mean": round(float(test_r2.mean()), 3)}  # fmt: skip


def motion_px(ro: Rollouts, chunk: int, fovy: float, resolution: int) -> dict[str, float]:
    """How far the finger moves within one chunk, in metres and in pixels of this camera."""
    px_per_m = resolution / 2 / (_CAMERA_TO_ARM_M * np.tan(np.deg2rad(fovy) / 2))
    move = np.linalg.norm(ro.finger[:, chunk:] - ro.finger[:, :-chunk], axis=-1)
    return {
        "finger_move_m_median": round(float(np.median(move)), 4),
        "finger_move_px_median": round(float(np.median(move) * px_per_m), 2),
        "arm_width_px": round(float(0.02 * px_per_m), 2),  # capsule diameter 2 cm
        "disc_fits": bool(_CAMERA_TO_ARM_M * np.tan(np.deg2rad(fovy) / 2) >= 0.25),
    }


def main(args: Args) -> dict:
    encoder = make_encoder(args.encoder, num_threads=args.threads)
    split_rng = np.random.default_rng(args.seed)
    test: np.ndarray | None = None
    reference: Rollouts | None = None
    rows = []
    for spec in args.variants:
        fovy, resolution = parse_variant(spec)
        t0 = time.perf_counter()
        ro = collect(args, fovy, resolution)
        t1 = time.perf_counter()
        if reference is None:
            reference = replace(ro, frames=ro.frames[:, :0])  # keep no frames alive
            test = split_episodes(ro.kinds, args.test_fraction, split_rng)
        # Physics ignores the camera, so every variant must replay the same trajectories.
        np.testing.assert_array_equal(ro.actions, reference.actions)
        feats = encode(encoder, ro.frames)
        t2 = time.perf_counter()
        e, t, n, d = feats.shape
        row: dict = {
            "variant": spec,
            "fovy": fovy,
            "resolution": resolution,
            "grid": int(np.sqrt(n)),
            **motion_px(ro, args.chunk, fovy, resolution),
            "episodes": e,
            "frames": e * t,
            "collect_seconds": round(t1 - t0, 1),
            "encode_seconds": round(t2 - t1, 1),
        }
        assert test is not None
        pose = pose_targets(reference, args.frame_every)
        for pooling, per_frame in (
            ("mean_patch", feats.mean(2, dtype=np.float32)),
            ("flat_patches", feats.reshape(e, t, n * d)),
            # The control: raw RGB of the same frames, which hold the pose exactly.
            ("pixels", ro.frames.reshape(e, t, -1).astype(np.float32) / 255.0),
        ):
            reduced = project(per_frame, ~test, args.pca_dim, np.random.default_rng(args.seed))
            row[pooling] = probe(reduced, reference, test, args, np.random.default_rng(args.seed))
            row[pooling]["pose"] = pose_probe(
                reduced, pose, reference.kinds, test, args, np.random.default_rng(args.seed)
            )
        del ro  # frames are the bulk of the memory
        row["probe_seconds"] = round(time.perf_counter() - t2, 1)
        print(row, flush=True)
        rows.append(row)
    assert reference is not None and test is not None
    # The ceiling sees the joint state at exactly the rendered steps the features see.
    state = reference.proprio[:, :: args.frame_every]
    q, qd = state[..., :2], state[..., 2:]
    ceiling = {
        "qpos_qvel": probe(
            np.concatenate([q, qd], -1), reference, test, args, np.random.default_rng(args.seed)
        ),
        "qpos": probe(q, reference, test, args, np.random.default_rng(args.seed)),
    }
    print({"ceiling": ceiling}, flush=True)
    result = dict(
        provenance=provenance(seed=args.seed, encoder=encoder.fingerprint, device="cpu"),
        task=args.task,
        policies={"noisy": args.noisy_episodes, "random": args.random_episodes},
        noise=args.noise,
        steps_per_episode=args.steps,
        chunk=args.chunk,
        frame_every=args.frame_every,
        pca_dim=args.pca_dim,
        test_fraction=args.test_fraction,
        test_episodes=int(test.sum()),
        alphas=list(args.alphas),
        action_axes=["shoulder", "wrist"],
        note="linear inverse-dynamics probe: ridge on per-frame PCA features -> mean action of the "
        "chunk; inputs now=[s_t], pair=[s_t, s_t+K], history=[s_t-K, s_t, s_t+K]; R² on held-out "
        "episodes, also on their random-torque subset (action independent of state); ceiling = "
        "same probe on the true joint state (no PCA); pixels = the same probes on the raw RGB "
        "frames (a control: they hold the pose exactly); pose = ridge from one frame's PCA inputs "
        "to sin/cos of both joint angles and the finger's (x, y), held-out R²",
        variants=rows,
        ceiling=ceiling,
    )
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
