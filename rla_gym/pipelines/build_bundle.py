"""Build an artifacts bundle: a real dataset + a trained world model -> a dreamed env's folder.

The build trains nothing. It reads cached features, chooses and stores what the env needs and
calibrates the success estimate, one named step each:

=============================  ===================================================================
step                           what it does
=============================  ===================================================================
:func:`open_sources`           dataset, encoder fingerprint and world model, checked against each
                               other
:func:`select_episodes`        reference demos, reset starts and calibration episodes (with the
                               training run's train / held-out split)
:func:`feature_banks`          reference rows every ``K`` frames and reset frames, quantised (the
                               error is measured), each start aligned with a reference demo
:func:`calibrate_real`         success threshold on real final frames; reward calibration
:func:`render_bank`            thumbnails of real frames for nearest-neighbour rendering
:func:`store_weights`          world-model weights in the bundle's dtype (prediction change
                               measured)
:func:`calibrate_dreamed`      success threshold on dreamed replays of the calibration episodes
:func:`copy_policy`            optional behaviour-cloned base policy, checked against the spaces
:func:`make_manifest`          everything above, with checksums, sizes and versions
=============================  ===================================================================

:func:`build_bundle` runs them into a temporary folder that replaces ``cfg.out`` atomically. The
format itself (file names, bank tensors, int8 quantisation, loading) is
:mod:`rla_gym.envs.artifacts`.

Example:
    ``rla-gym build-bundle --data data/libero_object_0 --world-model runs/wm/checkpoint
    --policy runs/bc --weights-dtype int8 --out /tmp/bundle``
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rla_gym.envs.artifacts import (
    BANK,
    DECODER,
    FORMAT_VERSION,
    MANIFEST,
    MAX_BUNDLE_BYTES,
    MODEL_FILES,
    POLICY,
    PROGRESS,
    WORLD_MODEL,
    dequantize_int8,
    nearest_demo,
    quantize_int8,
)
from rla_gym.errors import RLAGymError
from rla_gym.features.base import sha256_file
from rla_gym.utils.io import atomic_folder, load_json, save_json
from rla_gym.utils.provenance import package_versions

if TYPE_CHECKING:
    from rla_gym.data.episodes import EpisodeStore, FeatureEpisode
    from rla_gym.world_model.baselines import Predictor

__all__ = [
    "BuildBundleConfig",
    "EpisodeSelection",
    "FeatureBanks",
    "RealCalibration",
    "add_decoder",
    "add_part",
    "add_progress_head",
    "build_bundle",
    "calibrate_dreamed",
    "calibrate_real",
    "copy_policy",
    "feature_banks",
    "make_manifest",
    "open_sources",
    "render_bank",
    "select_episodes",
    "store_weights",
]

# Versions recorded in the manifest: what reads the bundle back.
_VERSIONED = ("rla-gym", "numpy", "torch", "gymnasium", "safetensors")


@dataclass(frozen=True, kw_only=True)
class BuildBundleConfig:
    """Everything ``rla-gym build-bundle`` needs."""

    data: Path
    """Dataset folder (an ``EpisodeStore``) with cached features of ``encoder``."""
    world_model: Path
    """RLA-WM (or baseline) checkpoint folder trained on this dataset's features."""
    out: Path
    """Bundle folder to write (replaced atomically)."""
    encoder: str = "opennsfw-resnet50-res4"
    """Encoder name of the cached features (``features/<encoder>/`` in the dataset)."""
    chunk: int = 8
    """``K``: control steps per env step (paper's WMRL: 8); at most the model's horizon."""
    num_reference_demos: int = 5
    """Successful expert train episodes kept as reference videos (int8: ~0.56 MB each for
    ~130-step LIBERO demos at N=64, D=512, K=8)."""
    policies: tuple[str, ...] = ("expert",)
    """Policies whose episodes are reference demos and reset starts."""
    quantization: Literal["int8", "float16"] = "int8"
    """Storage of reference/reset features: per-channel affine ``int8`` or ``float16``."""
    thumb_size: int = 64
    """Side of the render-bank thumbnails in pixels."""
    max_render_frames: int = 128
    """Cap on render-bank frames (64 px: 12 kB each)."""
    success_calibration: Literal["imagined", "real"] = "imagined"
    """Choose the success threshold on dreamed end states (each calibration episode's real
    actions replayed in the stored world model from its real first frame: what the env sees) or
    on real final frames. Both sets of numbers are recorded."""
    reset_from: Literal["all", "references"] = "all"
    """Reset starts: frame 0 of every episode of ``policies`` (each aligned with the reference
    demo whose frame 0 is nearest), or only the reference demos' own starts, for tasks whose goal
    differs per episode (reacher's target), where the nearest demo may chase another goal."""
    policy: Path | None = None
    """Saved :class:`~rla_gym.agents.ActorCritic` folder (the behaviour-cloned base that the WMRL
    pipeline fine-tunes, see ``rla-gym train-bc``) to ship as ``<bundle>/policy``; it must map
    ``(N, D)`` features to ``K * A`` actions. Stored with ``weights_dtype``."""
    weights_dtype: Literal["float32", "float16", "int8"] = "float16"
    """Storage of the world-model (and policy) weights in the bundle: ``float16`` halves the
    largest file, ``int8`` (per-row symmetric) quarters it; weights are float32 again after
    loading and the prediction change is measured and recorded in the manifest."""
    val_fraction: float = 0.1
    """Held-out fraction (same hash split as training, so use the training value)."""
    seed: int = 0
    """Split seed (same as training) and seed of the dreamed calibration replays."""

    def __post_init__(self) -> None:
        if self.quantization not in ("int8", "float16"):
            raise ValueError(f"unknown quantization {self.quantization!r}; use 'int8' or 'float16'")
        if self.weights_dtype not in ("float32", "float16", "int8"):
            raise ValueError(
                f"weights_dtype must be 'float32', 'float16' or 'int8', got {self.weights_dtype!r}"
            )


# --------------------------------------------------------------------------- small helpers
def _ref_rows(length: int, chunk: int) -> list[int]:
    """Frame indices ``0, K, 2K, ...`` plus the final frame ``length`` if it is not on the grid."""
    rows = list(range(0, length + 1, chunk))
    if rows[-1] != length:
        rows.append(length)
    return rows


def _thumbnail(frames: np.ndarray, size: int) -> np.ndarray:
    """``uint8 (B, H, W, 3)`` -> ``uint8 (B, size, size, 3)`` (box filter when it divides)."""
    b, h, w, _ = frames.shape
    if h % size == 0 and w % size == 0:
        fh, fw = h // size, w // size
        x = frames.reshape(b, size, fh, size, fw, 3).astype(np.float32).mean(axis=(2, 4))
        return np.rint(x).astype(np.uint8)
    ys = (np.arange(size) * h / size).astype(int)
    xs = (np.arange(size) * w / size).astype(int)
    return frames[:, ys][:, :, xs]


def _l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean |a - b| over the last two axes: ``(..., N, D)`` -> ``(...)``."""
    return np.abs(a - b).mean(axis=(-2, -1))


def _calibrate_threshold(
    dists: np.ndarray, labels: np.ndarray
) -> tuple[float | None, float | None, str]:
    """Threshold on distance-to-goal that best separates successes (below) from failures.

    Maximises balanced accuracy over midpoints of the sorted distances; with only one class
    present it falls back to a margin around that class and says so.

    Returns:
        ``(threshold, train balanced accuracy, method)``.
    """
    if len(dists) == 0:
        return None, None, "no calibration episodes"
    pos, neg = dists[labels], dists[~labels]
    if len(neg) == 0:
        return float(pos.max() * 1.1), 1.0, "successes only: 1.1 x largest success distance"
    if len(pos) == 0:
        return float(neg.min() * 0.9), 1.0, "failures only: 0.9 x smallest failure distance"
    s = np.sort(np.unique(dists))
    cands = np.concatenate([[s[0] * 0.5], (s[1:] + s[:-1]) / 2, [s[-1] * 1.5]])
    best, best_acc = float(cands[0]), -1.0
    for c in cands:
        acc = 0.5 * ((pos < c).mean() + (neg >= c).mean())
        if acc > best_acc:
            best, best_acc = float(c), float(acc)
    return best, best_acc, "max balanced accuracy on train episodes"


def _success_record(
    dists: np.ndarray, labels: np.ndarray, held: np.ndarray, metric: str
) -> dict[str, Any]:
    """Threshold chosen on the train episodes, agreement measured on the held-out ones."""
    thr, train_acc, method = _calibrate_threshold(dists[~held], labels[~held])
    held_acc = (
        float(((dists[held] < thr) == labels[held]).mean())
        if thr is not None and held.any()
        else None
    )
    return {
        "threshold": thr,
        "metric": metric,
        "method": method,
        "train_balanced_accuracy": train_acc,
        "heldout_agreement": held_acc,
        "train_episodes": int((~held).sum()),
        "train_successes": int(labels[~held].sum()),
        "heldout_episodes": int(held.sum()),
        "heldout_successes": int(labels[held].sum()),
    }


def _rewrite_weights(path: Path, dtype: str) -> None:
    """Store the weights file at ``path`` in ``dtype``.

    ``float16`` halves the floats; ``int8`` quantises the large tensors
    (:func:`~rla_gym.utils.checkpoint.quantize_state_dict`). Both load back as float32 through
    :func:`~rla_gym.utils.checkpoint.load_checkpoint`. A file already stored in ``dtype`` (a
    float32 checkpoint, or a part taken from another bundle) is kept byte for byte; any other
    change starts from the float32 the file stands for (quantising stored int8 values and scales
    again would corrupt them).
    """
    import torch
    from safetensors.torch import load_file, save_file

    from rla_gym.utils.checkpoint import INT8_SCALE, dequantize_state_dict, quantize_state_dict

    stored = load_file(str(path))
    if any(k.endswith(INT8_SCALE) for k in stored):
        stored_as = "int8"
    elif any(v.dtype == torch.float16 for v in stored.values()):
        stored_as = "float16"
    else:
        stored_as = "float32"
    if stored_as == dtype:
        return
    state = dequantize_state_dict(stored)
    if dtype == "float32":
        save_file(state, str(path))
        return
    if dtype == "int8":
        small = quantize_state_dict(state)
    else:
        small = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(small, str(path))


def _copy_model_files(src: Path, dst: Path) -> None:
    """Copy the loadable files (:data:`~rla_gym.envs.artifacts.MODEL_FILES`) of a model folder
    into ``dst`` (created if needed; an atomic temporary folder already exists). A checkpoint
    that names its type under an older key is shipped naming it under the current one."""
    from rla_gym.utils.checkpoint import CONFIG, typed_config

    dst.mkdir(exist_ok=True)
    for name in MODEL_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    if (dst / CONFIG).exists():
        config = load_json(dst / CONFIG)
        typed = typed_config(config)
        if list(typed.items()) != list(config.items()):
            save_json(typed, dst / CONFIG)


# --------------------------------------------------------------------------- 1. sources
def open_sources(cfg: BuildBundleConfig) -> tuple[EpisodeStore, dict[str, Any], str, Predictor]:
    """Open the dataset and the world model and check that they belong together.

    Returns:
        ``(store, dataset manifest, encoder fingerprint, world model)``.

    Raises:
        RLAGymError: the dataset has no ``cfg.encoder`` features.
        EncoderMismatchError: the world model was trained on another encoder's features.
        ValueError: ``cfg.chunk`` beyond the model's horizon, or another action size.
    """
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.world_model import load_predictor

    store = EpisodeStore(cfg.data)
    ds = store.manifest()
    fp = store.feature_fingerprint(cfg.encoder)
    if fp is None:
        raise RLAGymError(
            f"no {cfg.encoder} features in {cfg.data}; run "
            f"`rla-gym encode --data {cfg.data} --encoder {cfg.encoder}`"
        )
    model = load_predictor(cfg.world_model, expected_fingerprint=fp)
    if cfg.chunk < 1 or cfg.chunk > int(model.max_horizon):
        raise ValueError(f"chunk={cfg.chunk} must be in [1, {model.max_horizon}] (model horizon)")
    if int(model.action_dim) != int(ds["action_dim"]):
        raise ValueError(
            f"world model takes {model.action_dim}-D actions, dataset has {ds['action_dim']}"
        )
    return store, ds, fp, model


# --------------------------------------------------------------------------- 2. episodes
@dataclass(frozen=True)
class EpisodeSelection:
    """Which episodes play which part in the bundle (ids of the dataset's ``EpisodeStore``).

    Attributes:
        features: every encoded episode, features kept in ``float16 (T+1, N, D)``.
        reference: reference demos: successful train episodes of the chosen policies.
        reset: episodes whose frame 0 is a reset start.
        calibration: every encoded episode that is not a reference demo.
        heldout: the held-out split (the training run's validation episodes).
        skipped: episodes not encoded yet (e.g. a collection still in progress).
    """

    features: dict[str, FeatureEpisode]
    reference: list[str]
    reset: list[str]
    calibration: list[str]
    heldout: frozenset[str]
    skipped: int


def select_episodes(
    store: EpisodeStore, fingerprint: str, cfg: BuildBundleConfig
) -> EpisodeSelection:
    """Load every encoded episode and give each its part (see :class:`EpisodeSelection`).

    Reference demos are the first ``cfg.num_reference_demos`` successful train episodes of
    ``cfg.policies``; reset starts are every episode of ``cfg.policies`` (``reset_from="all"``)
    or the reference demos; every other episode calibrates the success threshold.

    Raises:
        ValueError: no successful train episode of ``cfg.policies``.
    """
    _, val_ids = store.split(cfg.val_fraction, seed=cfg.seed)
    heldout = frozenset(val_ids)
    encoded = [e for e in store.episode_ids() if store.has_features(e, cfg.encoder)]
    own = [e for e in encoded if e.rsplit("_", 1)[0] in cfg.policies]
    feats = {}
    for e in encoded:
        fe = store.load_features(e, cfg.encoder, expected_fingerprint=fingerprint)
        fe.features = fe.features.astype(np.float16)  # on-disk precision; halves peak memory
        feats[e] = fe
    ref_ids = [e for e in own if e not in heldout and bool(feats[e].success[-1])]
    ref_ids = ref_ids[: cfg.num_reference_demos]
    if not ref_ids:
        raise ValueError(
            f"no successful {'/'.join(cfg.policies)} train episodes in {cfg.data} to use as "
            f"reference demos"
        )
    return EpisodeSelection(
        features=feats,
        reference=ref_ids,
        reset=own if cfg.reset_from == "all" else ref_ids,
        calibration=[e for e in encoded if e not in ref_ids],
        heldout=heldout,
        skipped=len(store.episode_ids()) - len(encoded),
    )


# --------------------------------------------------------------------------- 3. feature banks
@dataclass(frozen=True)
class FeatureBanks:
    """The reference and reset banks as stored and as the env will read them back.

    ``R`` reference demos of ``T_ref`` rows, ``M`` reset starts, ``N`` tokens of ``D`` channels.

    Attributes:
        reference_q: stored reference rows, ``int8`` or ``float16 (R, T_ref, N, D)``; short demos
            are padded by repeating their final (goal) row.
        reference_len: ``int64 (R,)`` valid rows per demo.
        reset_q: stored reset frames, ``int8`` or ``float16 (M, N, D)``.
        scale: ``float32 (D,)`` dequantisation scale (ones for float16).
        offset: ``float32 (D,)`` dequantisation offset (zeros for float16).
        reference: ``float32 (R, T_ref, N, D)`` what the env reads back (dequantised).
        reset: ``float32 (M, N, D)`` likewise.
        reset_demo: ``int64 (M,)`` reference demo each start is aligned with.
        reset_init: ``int64 (M,)`` simulator init-state id of each start (-1: unknown).
        quantization: the manifest's record of the storage error.
    """

    reference_q: np.ndarray
    reference_len: np.ndarray
    reset_q: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    reference: np.ndarray
    reset: np.ndarray
    reset_demo: np.ndarray
    reset_init: np.ndarray
    quantization: dict[str, Any]

    @property
    def goal(self) -> np.ndarray:
        """``float32 (R, N, D)``: each demo's final frame."""
        return self.reference[np.arange(len(self.reference)), self.reference_len - 1]

    @property
    def row_change(self) -> float:
        """Mean L1 between consecutive reference rows (the scale of one chunk's change)."""
        return float(self.quantization["mean_l1_between_consecutive_rows"])


def feature_banks(
    store: EpisodeStore,
    sel: EpisodeSelection,
    chunk: int,
    quantization: Literal["int8", "float16"],
) -> FeatureBanks:
    """Reference rows at frames ``0, K, 2K, ...`` (plus each demo's final frame) and the reset
    frames, quantised together, with the storage error measured against the exact features.

    Each reset start is aligned with the reference demo whose (stored) frame 0 is nearest, or
    with itself if it is a reference demo.
    """
    feats, ref_ids = sel.features, sel.reference
    n_tok, dim = feats[ref_ids[0]].features.shape[1:]
    rows = [
        feats[e].features[_ref_rows(len(feats[e].actions), chunk)].astype(np.float32)
        for e in ref_ids
    ]
    t_ref = max(len(r) for r in rows)
    reference = np.stack([np.concatenate([r, np.repeat(r[-1:], t_ref - len(r), 0)]) for r in rows])
    reference_len = np.array([len(r) for r in rows], np.int64)
    reset = np.stack([feats[e].features[0] for e in sel.reset]).astype(np.float32)

    if quantization == "int8":
        # One scale for both banks: the env compares reset frames with reference rows.
        q_all, scale, offset = quantize_int8(
            np.concatenate([reference.reshape(-1, n_tok, dim), reset])
        )
        reference_q = q_all[: len(reference) * t_ref].reshape(reference.shape)
        reset_q = q_all[len(reference) * t_ref :]
        reference_dq = dequantize_int8(reference_q, scale, offset)
        reset_dq = dequantize_int8(reset_q, scale, offset)
    else:
        reference_q, reset_q = reference.astype(np.float16), reset.astype(np.float16)
        scale, offset = np.ones(dim, np.float32), np.zeros(dim, np.float32)
        reference_dq, reset_dq = reference_q.astype(np.float32), reset_q.astype(np.float32)
    err = np.abs(reference_dq - reference)
    chunk_change = float(_l1(reference[:, 1:], reference[:, :-1]).mean()) if t_ref > 1 else 0.0
    record = {
        "kind": quantization,
        "mean_abs_error": float(err.mean()),
        "max_abs_error": float(err.max()),
        "mean_abs_feature": float(np.abs(reference).mean()),
        "relative_error": float(err.mean() / max(np.abs(reference).mean(), 1e-12)),
        "mean_l1_between_consecutive_rows": chunk_change,
        "error_vs_row_change": float(err.mean() / max(chunk_change, 1e-12)),
    }
    ref_frame0 = reference_dq[:, 0]
    reset_demo = np.array(
        [
            ref_ids.index(e) if e in ref_ids else nearest_demo(reset_dq[i], ref_frame0)
            for i, e in enumerate(sel.reset)
        ],
        np.int64,
    )
    reset_init = np.array(
        [int(store.read(e, frames=False).meta.get("init_state_id", -1)) for e in sel.reset],
        np.int64,
    )
    return FeatureBanks(
        reference_q=reference_q,
        reference_len=reference_len,
        reset_q=reset_q,
        scale=scale,
        offset=offset,
        reference=reference_dq,
        reset=reset_dq,
        reset_demo=reset_demo,
        reset_init=reset_init,
        quantization=record,
    )


# --------------------------------------------------------------------------- 4. calibration
@dataclass(frozen=True)
class RealCalibration:
    """Success and reward calibration on the real calibration episodes.

    Attributes:
        success: the manifest's success record on real final frames.
        reward: the manifest's reward-calibration record.
        demos: ``(E,)`` reference demo each calibration episode is aligned with.
        labels: ``bool (E,)`` real success of each calibration episode.
        heldout: ``bool (E,)`` whether it is in the held-out split.
    """

    success: dict[str, Any]
    reward: dict[str, Any]
    demos: list[int]
    labels: np.ndarray
    heldout: np.ndarray


def calibrate_real(sel: EpisodeSelection, banks: FeatureBanks, chunk: int) -> RealCalibration:
    """Success threshold on real final frames (train split chooses, held-out split reports).

    The distance is the mean L1 of an episode's final features to the goal of the reference demo
    whose frame 0 is nearest; the reward record is the aligned L1 of each episode's rows to that
    demo, the scale a dreamed rollout's ``reward_l1`` is read against.
    """
    goal, ref_frame0 = banks.goal, banks.reference[:, 0]
    dists, labels, held, real_l1, demos = [], [], [], [], []
    for e in sel.calibration:
        fe = sel.features[e]
        f = fe.features.astype(np.float32)
        d = nearest_demo(f[0], ref_frame0)
        demos.append(d)
        dists.append(float(_l1(f[-1], goal[d])))
        labels.append(bool(fe.success[-1]))
        held.append(e in sel.heldout)
        ep_rows = f[_ref_rows(len(fe.actions), chunk)][1:]
        idx = np.minimum(np.arange(1, len(ep_rows) + 1), banks.reference_len[d] - 1)
        real_l1.append(float(_l1(ep_rows, banks.reference[d, idx]).mean()))
    labels_a, held_a = np.array(labels, bool), np.array(held, bool)
    success = _success_record(
        np.array(dists),
        labels_a,
        held_a,
        "mean L1 of real final-frame features to the aligned demo's goal",
    )
    reward = {
        "real_episode_aligned_l1_mean": float(np.mean(real_l1)) if real_l1 else None,
        "reference_row_change_l1_mean": banks.row_change,
        "note": "aligned L1 of real non-reference episodes to their nearest demo; a dreamed "
        "rollout with reward_l1 near this value tracks the demo as well as real data",
    }
    return RealCalibration(
        success=success, reward=reward, demos=demos, labels=labels_a, heldout=held_a
    )


def calibrate_dreamed(
    model: Predictor,
    sel: EpisodeSelection,
    banks: FeatureBanks,
    real: RealCalibration,
    chunk: int,
    seed: int,
) -> dict[str, Any]:
    """Success threshold on dreamed end states; the real-frame record is kept under ``real_frames``.

    The env applies the threshold to *dreamed* features, which are smoother than real ones; so
    each calibration episode's real actions are replayed in ``model`` (the bundle's stored,
    possibly quantised, world model) from its real first frame, and the dreamed end is labelled
    by the episode's real success.
    """
    import torch

    goal = banks.goal
    gen = torch.Generator().manual_seed(seed)
    dists = []
    for e, d in zip(sel.calibration, real.demos, strict=True):
        ep = sel.features[e]
        acts = torch.from_numpy(np.asarray(ep.actions, np.float32))[None]
        pieces = [acts[:, i : i + chunk] for i in range(0, acts.shape[1], chunk)]
        s0 = torch.from_numpy(ep.features[0].astype(np.float32))[None]
        with torch.no_grad():
            end = model.rollout(s0, pieces, generator=gen)[0, -1].numpy()
        dists.append(float(_l1(end, goal[d])))
    record = _success_record(
        np.array(dists),
        real.labels,
        real.heldout,
        "mean L1 of the dreamed final features (the episode's real actions "
        "replayed from its real first frame) to the aligned demo's goal",
    )
    return {**record, "real_frames": real.success}


# --------------------------------------------------------------------------- 5. render bank
def render_bank(
    store: EpisodeStore, sel: EpisodeSelection, chunk: int, thumb_size: int, max_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Thumbnails of real frames every ``K`` steps of the reference demos plus the reset frames.

    Returns:
        ``(frames uint8 (F, s, s, 3), pooled float32 (F, D))`` with ``F <= max_frames`` (evenly
        thinned) and ``pooled`` the token-mean features the env's renderer matches against.
    """
    feats = sel.features
    thumbs, pooled = [], []
    for e in sel.reference:
        ep = store.read(e)
        idx = _ref_rows(ep.length, chunk)
        thumbs.append(_thumbnail(ep.frames[idx], thumb_size))
        pooled.append(feats[e].features[idx].astype(np.float32).mean(1))
    for e in sel.reset:
        if e not in sel.reference:
            ep = store.read(e)
            thumbs.append(_thumbnail(ep.frames[:1], thumb_size))
            pooled.append(feats[e].features[:1].astype(np.float32).mean(1))
    frames, pooled_a = np.concatenate(thumbs), np.concatenate(pooled)
    if len(frames) > max_frames:
        keep = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames, pooled_a = frames[keep], pooled_a[keep]
    return frames, pooled_a


def _write_bank(path: Path, banks: FeatureBanks, frames: np.ndarray, pooled: np.ndarray) -> None:
    """``bank.safetensors`` (tensor names and dtypes: :mod:`rla_gym.envs.artifacts`)."""
    from safetensors.numpy import save_file

    save_file(
        {
            "reference_q": np.ascontiguousarray(banks.reference_q),
            "reference_len": banks.reference_len,
            "reset_q": np.ascontiguousarray(banks.reset_q),
            "reset_demo": banks.reset_demo,
            "reset_init": banks.reset_init,
            "quant_scale": banks.scale.astype(np.float32),
            "quant_offset": banks.offset.astype(np.float32),
            "render_frames": np.ascontiguousarray(frames),
            "render_pooled": pooled.astype(np.float16),
        },
        str(path),
    )


# --------------------------------------------------------------------------- 6. weights
def store_weights(
    model: Predictor, folder: Path, dtype: str, s_t: np.ndarray, chunk: int
) -> dict[str, Any]:
    """Rewrite ``folder/model.safetensors`` in ``dtype`` and measure what that does to predictions.

    The check predicts one chunk of zero actions from ``s_t (B, N, D)`` with the same noise
    using ``model`` (the original weights) and the re-loaded folder.

    Returns:
        The manifest's ``weights`` record.
    """
    if dtype == "float32":
        return {"dtype": "float32", "prediction_rel_error": 0.0}
    if dtype not in ("float16", "int8"):
        raise ValueError(f"weights_dtype must be 'float32', 'float16' or 'int8', got {dtype!r}")
    import torch

    from rla_gym.world_model import load_predictor

    _rewrite_weights(folder / "model.safetensors", dtype)
    small = load_predictor(folder)
    s = torch.from_numpy(s_t).float()
    acts = torch.zeros(len(s), chunk, int(model.action_dim))
    a = model.predict(s, acts, generator=torch.Generator().manual_seed(0))
    b = small.predict(s, acts, generator=torch.Generator().manual_seed(0))
    other = model.predict(s, acts, generator=torch.Generator().manual_seed(1))
    change = (a - s).abs().mean().clamp_min(1e-12)
    err = float((a - b).abs().mean() / change)
    # Scale for the error: how far two flow samples (other noise) of the original model differ.
    spread = float((a - other).abs().mean() / change)
    return {
        "dtype": dtype,
        "prediction_rel_error": err,
        "sample_spread_rel": spread,
        "note": f"mean |pred_{dtype} - pred_fp32| / mean |pred_fp32 - s_t| for one "
        "zero-action chunk with identical noise; weights are float32 after loading",
    }


# --------------------------------------------------------------------------- 7. policy
def copy_policy(
    src: Path, dst: Path, obs_shape: tuple[int, int], action_dim: int, dtype: str
) -> dict[str, Any]:
    """Copy a saved policy into the bundle (weights in ``dtype``) after checking its spaces.

    Args:
        src: a saved :class:`~rla_gym.agents.ActorCritic` folder.
        dst: ``<bundle>/policy`` (must not exist).
        obs_shape: the env's observation ``(N, D)``.
        action_dim: the env's action size ``K * A``.
        dtype: weights storage, as for the world model.

    Returns:
        The manifest's ``policy`` record.

    Raises:
        RLAGymError: ``src`` is not a saved policy folder.
        ValueError: the policy maps other spaces than the env's.
    """
    if not (src / "config.json").exists() or not (src / "model.safetensors").exists():
        raise RLAGymError(f"{src} is not a saved policy folder (config.json + model.safetensors)")
    spec = load_json(src / "config.json")
    spec = spec.get("policy_spec", spec)
    if tuple(spec["observation_shape"]) != obs_shape or int(spec["action_dim"]) != action_dim:
        raise ValueError(
            f"policy {src} maps {tuple(spec['observation_shape'])} -> {spec['action_dim']} but "
            f"the bundle's env maps {obs_shape} -> {action_dim} (K * A); train it on this data"
        )
    _copy_model_files(src, dst)
    _rewrite_weights(dst / "model.safetensors", dtype)
    meta = load_json(src / "meta.json") if (src / "meta.json").exists() else {}
    return {
        "source": str(src),
        # "bc" or "bc+rla" (BC with the RLA head, trained on action-free videos too)
        "method": meta.get("method"),
        "samples": meta.get("samples"),
        "episodes": meta.get("episodes"),
        "dtype": dtype,
        "sha256": sha256_file(dst / "model.safetensors"),
    }


# --------------------------------------------------------------------------- 8. manifest
def _training_record(wm_ckpt: Path, policy: Path | None) -> dict[str, Any]:
    """What trained the bundle's parts and how long it took (from their ``meta.json``)."""
    keys = (
        "step",
        "wall_clock_s",
        "val_metrics",
        "parameters",
        "trainable_parameters",
        "heldout_action_mse",
        "labelled_rows",
        "video_rows",
    )

    def pick(folder: Path | None) -> dict[str, Any] | None:
        if folder is None or not (folder / "meta.json").exists():
            return None
        meta = load_json(folder / "meta.json")
        return {k: meta[k] for k in keys if k in meta}

    wm_meta = load_json(wm_ckpt / "meta.json") if (wm_ckpt / "meta.json").exists() else {}
    rla = wm_meta.get("rla_checkpoint")
    return {
        "world_model": pick(wm_ckpt),
        "rla": pick(Path(rla)) if rla else None,
        "policy": pick(Path(policy)) if policy is not None else None,
    }


def make_manifest(
    cfg: BuildBundleConfig,
    folder: Path,
    dataset: dict[str, Any],
    fingerprint: str,
    model_kind: str,
    sel: EpisodeSelection,
    banks: FeatureBanks,
    render_frames: int,
    success: dict[str, Any],
    reward: dict[str, Any],
    weights: dict[str, Any],
    policy: dict[str, Any] | None,
) -> dict[str, Any]:
    """``manifest.json`` of the bundle being written in ``folder`` (bank checksum, file sizes).

    Args:
        cfg: the build options.
        folder: the bundle folder with every file but the manifest in place.
        dataset: the dataset's manifest (sim, task, action size and bounds).
        fingerprint: encoder fingerprint of the banks and the world model.
        model_kind: the world model's type (``rla-wm`` or a baseline).
        sel: :func:`select_episodes`.
        banks: :func:`feature_banks`.
        render_frames: frames in the render bank.
        success: success record (:func:`calibrate_real` or :func:`calibrate_dreamed`).
        reward: reward-calibration record (:func:`calibrate_real`).
        weights: :func:`store_weights`.
        policy: :func:`copy_policy` (``None``: no policy shipped).
    """
    n_tok, dim = banks.reference.shape[2:]
    t_ref = banks.reference.shape[1]
    a_dim = int(dataset["action_dim"])
    sizes = {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }
    return {
        "format_version": FORMAT_VERSION,
        "sim": dataset["sim"],
        "task": dataset["task"],
        "resolution": dataset.get("resolution"),
        "encoder": cfg.encoder,
        "encoder_fingerprint": fingerprint,
        "world_model_kind": model_kind,
        "chunk": cfg.chunk,
        "action_dim": a_dim,
        "action_low": list(map(float, dataset.get("action_low", [-1.0] * a_dim))),
        "action_high": list(map(float, dataset.get("action_high", [1.0] * a_dim))),
        "grid": list(sel.features[sel.reference[0]].grid),
        "num_tokens": int(n_tok),
        "feature_dim": int(dim),
        # The one episode horizon of the bundle's envs: the reference demos' length in chunks.
        "max_episode_steps": int(t_ref - 1),
        "reference": {
            "episodes": sel.reference,
            "rows": int(t_ref),
            "lengths": banks.reference_len.tolist(),
        },
        "reset": {
            "from": cfg.reset_from,
            "episodes": sel.reset,
            "init_state_ids": banks.reset_init.tolist(),
        },
        "render": {"frames": render_frames, "thumb_size": cfg.thumb_size},
        "quantization": banks.quantization,
        "weights": weights,
        "success": success,
        "reward_calibration": reward,
        "policy": policy,
        "training": _training_record(Path(cfg.world_model), cfg.policy),
        "files": {BANK: {"sha256": sha256_file(folder / BANK), "bytes": sizes[BANK]}},
        "size_bytes": sizes,
        "total_bytes": sum(sizes.values()),
        "split": {"val_fraction": cfg.val_fraction, "seed": cfg.seed},
        "skipped_unencoded_episodes": sel.skipped,
        "versions": package_versions(_VERSIONED),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- the pipeline
def build_bundle(cfg: BuildBundleConfig) -> Path:
    """Build an artifacts bundle from a real dataset and a trained world model.

    Runs the steps of this module in order (see the module docstring) into a temporary folder
    that replaces ``cfg.out`` only once the manifest is written.

    Returns:
        The bundle folder ``cfg.out``; :func:`rla_gym.envs.artifacts.load_artifacts` reads it.

    Raises:
        EncoderMismatchError: the world model was trained on another encoder's features.
        RLAGymError: the dataset has no features of ``cfg.encoder``, or ``cfg.policy`` is not a
            saved policy folder.
        ValueError: no usable reference demos, ``cfg.chunk`` beyond the model's horizon, or a
            policy for other spaces.
    """
    store, ds, fp, model = open_sources(cfg)
    sel = select_episodes(store, fp, cfg)
    banks = feature_banks(store, sel, cfg.chunk, cfg.quantization)
    real = calibrate_real(sel, banks, cfg.chunk)
    frames, pooled = render_bank(store, sel, cfg.chunk, cfg.thumb_size, cfg.max_render_frames)
    with atomic_folder(cfg.out) as tmp:
        _write_bank(tmp / BANK, banks, frames, pooled)
        _copy_model_files(Path(cfg.world_model), tmp / WORLD_MODEL)
        weights = store_weights(
            model, tmp / WORLD_MODEL, cfg.weights_dtype, banks.reset[:8], cfg.chunk
        )
        success = real.success
        if cfg.success_calibration == "imagined" and sel.calibration:
            from rla_gym.world_model import load_predictor

            stored = load_predictor(tmp / WORLD_MODEL)  # what the env will dream with
            success = calibrate_dreamed(stored, sel, banks, real, cfg.chunk, cfg.seed)
        policy = None
        if cfg.policy is not None:
            n_tok, dim = banks.reference.shape[2:]
            policy = copy_policy(
                Path(cfg.policy),
                tmp / POLICY,
                (int(n_tok), int(dim)),
                cfg.chunk * int(ds["action_dim"]),
                cfg.weights_dtype,
            )
        manifest = make_manifest(
            cfg,
            tmp,
            ds,
            fp,
            getattr(model, "MODEL_TYPE", ""),
            sel,
            banks,
            len(frames),
            success,
            real.reward,
            weights,
            policy,
        )
        save_json(manifest, tmp / MANIFEST)
    return Path(cfg.out)


# --------------------------------------------------------------------------- parts added later
def add_part(
    bundle: str | Path, part: str, src: str | Path, dtype: str, record: dict[str, Any]
) -> dict[str, Any]:
    """Add (or replace) a model folder ``<bundle>/<part>/`` without rebuilding the bundle.

    The model files are copied (weights stored in ``dtype``), then the manifest's sizes and its
    ``record`` under ``part`` are rewritten; the part folder and the manifest are each replaced
    atomically, the folder first, so a crash leaves a loadable bundle.

    Args:
        bundle: an existing bundle folder.
        part: folder and manifest key (e.g. ``"progress"``).
        src: a checkpoint folder (``config.json`` + ``model.safetensors``).
        dtype: weights storage: ``float32``, ``float16`` or ``int8``.
        record: what the manifest says about the part (provenance, metrics).

    Returns:
        The updated manifest.
    """
    from rla_gym.envs.artifacts import load_artifacts

    bundle = Path(bundle)
    manifest = load_artifacts(bundle).manifest  # a valid bundle, or a clear error
    with atomic_folder(bundle / part) as tmp:
        _copy_model_files(Path(src), tmp)
        _rewrite_weights(tmp / "model.safetensors", dtype)
    sizes = {
        p.relative_to(bundle).as_posix(): p.stat().st_size
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest.update(
        {
            part: {
                **record,
                "dtype": dtype,
                "sha256": sha256_file(bundle / part / "model.safetensors"),
            },
            "size_bytes": sizes,
            "total_bytes": sum(sizes.values()),
        }
    )
    save_json(manifest, bundle / MANIFEST)
    return manifest


def add_progress_head(bundle: str | Path, head: str | Path, dtype: str = "int8") -> dict[str, Any]:
    """Ship a trained progress / success head in a bundle (``reward_mode="progress"``).

    Raises:
        EncoderMismatchError: the head reads another encoder's features than the bundle's.
    """
    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.reward.progress import ProgressHead

    fp = load_artifacts(bundle).manifest["encoder_fingerprint"]
    ProgressHead.from_pretrained(head, expected_fingerprint=fp)  # refuses a mismatched head
    meta = load_json(Path(head) / "meta.json") if (Path(head) / "meta.json").exists() else {}
    keys = ("step", "wall_clock_s", "val_metrics", "train_episodes", "val_episodes", "data")
    record = {"source": str(head), **{k: meta[k] for k in keys if k in meta}}
    manifest = add_part(bundle, PROGRESS, head, dtype, record)
    load_artifacts(bundle).load_progress_head()  # what the env will load, stored weights included
    return manifest


def add_decoder(
    bundle: str | Path,
    decoder: str | Path,
    dtype: str = "int8",
    max_bytes: int | None = MAX_BUNDLE_BYTES,
) -> dict[str, Any]:
    """Ship a trained frame decoder in a bundle (``render_backend="decoder"``).

    The decoder is checked against the bundle (encoder fingerprint, grid, feature size) and the
    size budget on a scratch copy before the bundle is touched. The manifest's ``decoder`` record
    holds its provenance (training steps, wall-clock, held-out PSNR, data) and how far the stored
    weights' frames are from the float32 decoder's on the bundle's reset starts (PSNR, dB).

    Args:
        bundle: an existing bundle folder.
        decoder: a decoder checkpoint folder (``rla-gym train-decoder``'s ``<out>/checkpoint``).
        dtype: weights storage: ``float32``, ``float16`` or ``int8``.
        max_bytes: refuse a decoder that takes the bundle past this size (``None``: no cap).

    Returns:
        The updated manifest.

    Raises:
        EncoderMismatchError: the decoder reads another encoder's features or grid.
        RLAGymError: the bundle would exceed ``max_bytes``.
    """
    import tempfile

    import torch

    from rla_gym.decoder import FrameDecoder, psnr
    from rla_gym.envs.artifacts import load_artifacts

    art = load_artifacts(bundle)
    m = art.manifest
    model = FrameDecoder.from_pretrained(
        decoder,
        expected_fingerprint=m["encoder_fingerprint"],
        expected_grid=tuple(m["grid"]),
        expected_feature_dim=int(m["feature_dim"]),
    )
    with tempfile.TemporaryDirectory() as scratch:
        stored_dir = Path(scratch) / DECODER
        _copy_model_files(Path(decoder), stored_dir)
        _rewrite_weights(stored_dir / "model.safetensors", dtype)
        new_bytes = sum(p.stat().st_size for p in stored_dir.iterdir())
        stored = FrameDecoder.from_pretrained(stored_dir)
        starts = torch.from_numpy(art.reset_features[:16]).float()
        with torch.no_grad():
            change = float(psnr(stored(starts), model(starts)).mean())
    others = sum(v for k, v in m["size_bytes"].items() if not k.startswith(f"{DECODER}/"))
    if max_bytes is not None and others + new_bytes > max_bytes:
        raise RLAGymError(
            f"with this decoder ({new_bytes / 1e6:.2f} MB as {dtype}) bundle {art.path} would "
            f"take {(others + new_bytes) / 1e6:.2f} MB, over the {max_bytes / 1e6:.1f} MB "
            f"budget; train a smaller decoder (--width, --channels) or store it as int8"
        )
    meta = load_json(Path(decoder) / "meta.json") if (Path(decoder) / "meta.json").exists() else {}
    val = meta.get("val_metrics", {})
    record = {
        "source": str(decoder),
        "parameters": model.num_parameters(),
        "bytes": new_bytes,
        "grid": list(model.config.grid),
        "resolution": model.config.resolution,
        "training_steps": meta.get("step"),
        "wall_clock_s": meta.get("wall_clock_s"),
        "heldout_psnr": val.get("val/psnr"),
        "heldout_foreground_l1": val.get("val/foreground_l1"),
        "train_episodes": meta.get("train_episodes"),
        "heldout_episodes": meta.get("val_episodes"),
        "data": meta.get("data"),
        "stored_vs_float32_psnr": change,
        "note": "heldout_psnr: float32 decoder on held-out real features vs the real frames "
        "(dB); stored_vs_float32_psnr: frames of the stored weights vs the float32 "
        "decoder's on the bundle's reset starts",
    }
    manifest = add_part(bundle, DECODER, decoder, dtype, record)
    load_artifacts(bundle).load_decoder()  # what the env will load, stored weights included
    return manifest
