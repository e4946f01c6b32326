"""Artifacts bundle: everything a dreamed environment needs, in one small folder.

Layout::

    manifest.json        sim, task, encoder fingerprint, chunk K, action bounds, grid, reward and
                         success calibration, quantisation error, file checksums, versions
    world_model/         RLA-WM checkpoint (the frozen RLA is embedded); loads with
                         rla_gym.world_model.load_predictor / RLAWorldModel.from_pretrained
    bank.safetensors     reset bank, reference demos (every K-th frame) and the render bank
    policy/              optional: behaviour-cloned base policy (ActorCritic folder) that the WMRL
                         main job fine-tunes in the dream

Bank tensors (``R`` reference demos, ``T_ref`` rows each, ``M`` reset starts, ``F`` render frames)::

    reference_q    int8  (R, T_ref, N, D)   quantised features at control steps 0, K, 2K, ...; the
                                            last row is the demo's final frame (its goal); short
                                            demos are padded by repeating it
    reference_len  int64 (R,)               valid rows per demo
    reset_q        int8  (M, N, D)          quantised frame-0 features of real episodes
    reset_demo     int64 (M,)               reference demo each start is aligned with
    reset_init     int64 (M,)               simulator init-state id of each start (-1: unknown)
    quant_scale    float32 (D,)             per-channel dequantisation: x = offset + scale * (q+128)
    quant_offset   float32 (D,)
    render_frames  uint8 (F, h, w, 3)       thumbnails of real frames for nearest-neighbour render
    render_pooled  float16 (F, D)           token-mean features of those frames

With ``quantization="float16"`` the ``*_q`` tensors are float16 and scale/offset are unused.
Only numpy, safetensors and the episode store are needed to *build* the bank; the world model is
read only to check that it matches the data (fingerprint, action size, horizon).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rla_gym.errors import CorruptFileError, EncoderMismatchError, RLAGymError
from rla_gym.utils.io import load_json, save_json

__all__ = [
    "ASSETS_DIR",
    "Artifacts",
    "ArtifactsNotFoundError",
    "BuildArtifactsConfig",
    "build_artifacts",
    "dequantize_int8",
    "load_artifacts",
    "nearest_demo",
    "quantize_int8",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BANK = "bank.safetensors"
WORLD_MODEL = "world_model"
POLICY = "policy"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# Only what loading needs: optimizer/train state would triple the bundle for nothing.
_WM_FILES = ("config.json", "model.safetensors", "meta.json")


class ArtifactsNotFoundError(RLAGymError, FileNotFoundError):
    """No artifacts bundle at the requested place; the message says how to build one."""


# --------------------------------------------------------------------------- quantisation
def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel affine int8 quantisation over the last axis.

    Args:
        x: ``float (..., D)``.

    Returns:
        ``(q int8 (..., D), scale float32 (D,), offset float32 (D,))`` with
        ``x ≈ offset + scale * (q + 128)``; the error is at most ``scale / 2`` per channel.
    """
    flat = x.reshape(-1, x.shape[-1]).astype(np.float32)
    lo, hi = flat.min(0), flat.max(0)
    # A constant channel would divide by zero; any positive scale reproduces it exactly.
    scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
    q = np.clip(np.rint((x - lo) / scale), 0, 255) - 128
    return q.astype(np.int8), scale, lo.astype(np.float32)


def dequantize_int8(q: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_int8`: ``int8 (..., D)`` -> ``float32 (..., D)``."""
    return offset + scale * (q.astype(np.float32) + 128.0)


# --------------------------------------------------------------------------- loaded bundle
@dataclass(frozen=True)
class Artifacts:
    """A loaded bundle (features dequantised to float32 numpy; the world model loads on demand).

    Attributes:
        path: the bundle folder.
        manifest: the parsed ``manifest.json``.
        reference: ``float32 (R, T_ref, N, D)``.
        reference_len: ``int64 (R,)``.
        reset_features: ``float32 (M, N, D)``.
        reset_demo: ``int64 (M,)``.
        reset_init: ``int64 (M,)``.
        render_frames: ``uint8 (F, h, w, 3)``.
        render_pooled: ``float32 (F, D)``.
    """

    path: Path
    manifest: dict[str, Any]
    reference: np.ndarray
    reference_len: np.ndarray
    reset_features: np.ndarray
    reset_demo: np.ndarray
    reset_init: np.ndarray
    render_frames: np.ndarray
    render_pooled: np.ndarray

    @property
    def chunk(self) -> int:
        """``K``: control steps per env step."""
        return int(self.manifest["chunk"])

    @property
    def action_dim(self) -> int:
        """``A``: action size of one control step."""
        return int(self.manifest["action_dim"])

    @property
    def success_threshold(self) -> float | None:
        """Calibrated L1-to-goal threshold of the success estimate (``None`` if uncalibrated)."""
        thr = self.manifest.get("success", {}).get("threshold")
        return None if thr is None else float(thr)

    def load_world_model(self, device: str = "cpu") -> Any:
        """The bundle's world model, checked against the bank's encoder fingerprint.

        Raises:
            EncoderMismatchError: the checkpoint was trained on another encoder's features.
        """
        from rla_gym.world_model import load_predictor

        model = load_predictor(
            self.path / WORLD_MODEL, expected_fingerprint=self.manifest["encoder_fingerprint"],
            device=device,
        )
        if int(model.action_dim) != self.action_dim or self.chunk > int(model.max_horizon):
            raise CorruptFileError(
                f"{self.path}: world model takes {model.action_dim}-D actions up to "
                f"{model.max_horizon} steps, but the manifest says action_dim={self.action_dim}, "
                f"chunk={self.chunk}; rebuild the bundle with build_artifacts"
            )
        return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def how_to_build(out: str | Path, sim: str = "<sim>") -> str:
    """The command that builds a bundle at ``out`` (used in error messages)."""
    return (
        f"python -m rla_gym.envs.artifacts --data data/<{sim} dataset> "
        f"--world-model runs/<wm>/checkpoint --out {out}"
    )


def load_artifacts(path: str | Path) -> Artifacts:
    """Read and validate a bundle folder written by :func:`build_artifacts`.

    Raises:
        ArtifactsNotFoundError: no bundle at ``path``.
        CorruptFileError: unreadable manifest, checksum mismatch or inconsistent shapes.
        EncoderMismatchError: the world model's encoder fingerprint differs from the bank's.
    """
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise ArtifactsNotFoundError(
            f"no artifacts bundle at {path} (missing {MANIFEST}); build one with: "
            f"{how_to_build(path)}"
        )
    try:
        manifest = load_json(path / MANIFEST)
    except (OSError, json.JSONDecodeError) as err:
        raise CorruptFileError(
            f"{path / MANIFEST} is unreadable ({err}); rebuild the bundle"
        ) from err
    bank_path = path / BANK
    want = manifest.get("files", {}).get(BANK, {}).get("sha256")
    if not bank_path.exists() or want is None or _sha256(bank_path) != want:
        raise CorruptFileError(
            f"{bank_path} is missing or does not match the checksum in {MANIFEST}; the bundle is "
            f"corrupt or mixes files of two builds — rebuild it: {how_to_build(path)}"
        )
    wm_cfg = path / WORLD_MODEL / "config.json"
    if not wm_cfg.exists():
        raise CorruptFileError(f"{path} has no {WORLD_MODEL}/config.json; rebuild the bundle")
    wm_fp = load_json(wm_cfg).get("encoder_fingerprint", "")
    if wm_fp != manifest.get("encoder_fingerprint"):
        raise EncoderMismatchError(
            f"{path}: world model was trained on encoder {wm_fp!r} but the bank holds features of "
            f"{manifest.get('encoder_fingerprint')!r}; rebuild the bundle from matching data"
        )
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        bank = load_file(str(bank_path))
    except (SafetensorError, OSError) as err:
        raise CorruptFileError(f"{bank_path} is unreadable ({err}); rebuild the bundle") from err
    if manifest.get("quantization", {}).get("kind") == "int8":
        deq = lambda q: dequantize_int8(q, bank["quant_scale"], bank["quant_offset"])  # noqa: E731
    else:
        deq = lambda q: q.astype(np.float32)  # noqa: E731
    art = Artifacts(
        path=path,
        manifest=manifest,
        reference=deq(bank["reference_q"]),
        reference_len=bank["reference_len"].astype(np.int64),
        reset_features=deq(bank["reset_q"]),
        reset_demo=bank["reset_demo"].astype(np.int64),
        reset_init=bank["reset_init"].astype(np.int64),
        render_frames=bank["render_frames"],
        render_pooled=bank["render_pooled"].astype(np.float32),
    )
    n, d = int(manifest["num_tokens"]), int(manifest["feature_dim"])
    if art.reference.shape[2:] != (n, d) or art.reset_features.shape[1:] != (n, d):
        raise CorruptFileError(f"{bank_path}: feature shapes disagree with ({n}, {d}) in manifest")
    if art.reset_demo.max(initial=0) >= len(art.reference):
        raise CorruptFileError(
            f"{bank_path}: reset_demo points past the {len(art.reference)} demos"
        )
    return art


# --------------------------------------------------------------------------- building
@dataclass(frozen=True, kw_only=True)
class BuildArtifactsConfig:
    """Command-line options of ``python -m rla_gym.envs.artifacts``."""

    data: str
    """Dataset folder (an ``EpisodeStore``) with cached features of ``encoder``."""
    world_model: str
    """RLA-WM checkpoint folder trained on this dataset's features."""
    out: str
    """Bundle folder to write (replaced atomically)."""
    encoder: str = "opennsfw-resnet50-res4"
    """Encoder name of the cached features (``features/<encoder>/`` in the dataset)."""
    chunk: int = 8
    """``K``: control steps per env step (paper's WMRL: 8)."""
    num_reference_demos: int = 5
    """Successful expert train episodes kept as reference videos (int8: ~0.56 MB each for
    ~130-step LIBERO demos at N=64, D=512, K=8)."""
    policies: tuple[str, ...] = ("expert",)
    """Policies whose episodes are reference demos and reset starts."""
    quantization: Literal["int8", "float16"] = "int8"
    """Storage of reference/reset features."""
    thumb_size: int = 64
    """Side of the render-bank thumbnails in pixels."""
    max_render_frames: int = 128
    """Cap on render-bank frames (64 px: 12 kB each)."""
    success_calibration: Literal["imagined", "real"] = "imagined"
    """Choose the success threshold on dreamed replays of real episodes (what the env sees) or on
    real final frames."""
    reset_from: Literal["all", "references"] = "all"
    """Reset starts: every episode of ``policies`` or only the reference demos (per-episode goals,
    e.g. reacher)."""
    policy: str | None = None
    """Behaviour-cloned base policy folder to ship as ``<bundle>/policy`` (see
    ``rla_gym.evaluation.wmrl.train_bc_policy``)."""
    weights_dtype: Literal["float32", "float16", "int8"] = "float16"
    """Storage of the world-model weights in the bundle: ``float16`` halves the largest file,
    ``int8`` (per-row symmetric) quarters it; weights are float32 again after loading and the
    prediction change is measured and recorded in the manifest."""
    val_fraction: float = 0.1
    """Held-out fraction (same hash split as training, so use the training value)."""
    seed: int = 0
    """Split seed (same as training)."""


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


def nearest_demo(frame0: np.ndarray, ref_frame0: np.ndarray) -> int:
    """Reference demo whose first frame is closest in L1 (same init state -> same scene).

    Args:
        frame0: ``(N, D)`` features of an episode's first frame.
        ref_frame0: ``(R, N, D)`` first-frame features of the reference demos.
    """
    return int(np.argmin(_l1(frame0[None], ref_frame0)))


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


def _versions() -> dict[str, str]:
    out = {}
    for p in ("rla-gym", "numpy", "torch", "gymnasium", "safetensors"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[p] = importlib.metadata.version(p)
    return out


def _rewrite_weights(path: Path, dtype: str) -> None:
    """Store the weights file at ``path`` in ``dtype`` (``float32`` leaves it as it is).

    ``float16`` halves the floats; ``int8`` quantises the large tensors
    (:func:`~rla_gym.utils.checkpoint.quantize_state_dict`). Both load back as float32 through
    :func:`~rla_gym.utils.checkpoint.load_checkpoint`.
    """
    if dtype == "float32":
        return
    from safetensors.torch import load_file, save_file

    from rla_gym.utils.checkpoint import quantize_state_dict

    state = load_file(str(path))
    if dtype == "int8":
        small = quantize_state_dict(state)
    else:
        small = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(small, str(path))


def _store_weights(
    model: Any, folder: Path, dtype: str, s_t: np.ndarray, chunk: int
) -> dict[str, Any]:
    """Rewrite ``model.safetensors`` in ``dtype`` and measure what that does to predictions.

    The check predicts one chunk of zero actions from ``s_t (B, N, D)`` with the same noise
    using the original and the re-loaded weights.
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
    return {"dtype": dtype, "prediction_rel_error": err, "sample_spread_rel": spread,
            "note": f"mean |pred_{dtype} - pred_fp32| / mean |pred_fp32 - s_t| for one "
                    "zero-action chunk with identical noise; weights are float32 after loading"}


def _copy_policy(
    src: Path, dst: Path, obs_shape: tuple[int, int], action_dim: int, dtype: str
) -> dict:
    """Copy a saved policy into the bundle (weights in ``dtype``) after checking its spaces."""
    if not (src / "config.json").exists() or not (src / "model.safetensors").exists():
        raise RLAGymError(f"{src} is not a saved policy folder (config.json + model.safetensors)")
    spec = load_json(src / "config.json")
    spec = spec.get("policy_spec", spec)
    if tuple(spec["observation_shape"]) != obs_shape or int(spec["action_dim"]) != action_dim:
        raise ValueError(
            f"policy {src} maps {tuple(spec['observation_shape'])} -> {spec['action_dim']} but "
            f"the bundle's env maps {obs_shape} -> {action_dim} (K * A); train it on this data"
        )
    dst.mkdir()
    for name in ("config.json", "model.safetensors", "meta.json"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    _rewrite_weights(dst / "model.safetensors", dtype)
    meta = load_json(src / "meta.json") if (src / "meta.json").exists() else {}
    return {"source": str(src), "samples": meta.get("samples"), "episodes": meta.get("episodes"),
            "dtype": dtype, "sha256": _sha256(dst / "model.safetensors")}


def _success_record(
    dists: np.ndarray, labels: np.ndarray, held: np.ndarray, metric: str
) -> dict[str, Any]:
    """Threshold chosen on the train episodes, agreement measured on the held-out ones."""
    thr, train_acc, method = _calibrate_threshold(dists[~held], labels[~held])
    held_acc = (float(((dists[held] < thr) == labels[held]).mean())
                if thr is not None and held.any() else None)
    return {"threshold": thr, "metric": metric, "method": method,
            "train_balanced_accuracy": train_acc, "heldout_agreement": held_acc,
            "train_episodes": int((~held).sum()), "train_successes": int(labels[~held].sum()),
            "heldout_episodes": int(held.sum()), "heldout_successes": int(labels[held].sum())}


def _imagined_goal_distances(
    model: Any, episodes: list[Any], goal: np.ndarray, demos: list[int], chunk: int, seed: int
) -> np.ndarray:
    """L1 to its demo's goal of each episode's dreamed end state: ``(E,)``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for ep, d in zip(episodes, demos, strict=True):
        acts = torch.from_numpy(np.asarray(ep.actions, np.float32))[None]
        pieces = [acts[:, i:i + chunk] for i in range(0, acts.shape[1], chunk)]
        s0 = torch.from_numpy(ep.features[0].astype(np.float32))[None]
        with torch.no_grad():
            end = model.rollout(s0, pieces, generator=gen)[0, -1].numpy()
        out.append(float(_l1(end, goal[d])))
    return np.array(out)


def _training_record(wm_ckpt: Path, policy: str | Path | None) -> dict[str, Any]:
    """What trained the bundle's parts and how long it took (from their ``meta.json``)."""
    keys = ("step", "wall_clock_s", "val_metrics", "parameters", "trainable_parameters",
            "heldout_action_mse", "labelled_rows")

    def pick(folder: Path | None) -> dict[str, Any] | None:
        if folder is None or not (folder / "meta.json").exists():
            return None
        meta = load_json(folder / "meta.json")
        return {k: meta[k] for k in keys if k in meta}

    wm_meta = load_json(wm_ckpt / "meta.json") if (wm_ckpt / "meta.json").exists() else {}
    rla = wm_meta.get("rla_checkpoint")
    return {"world_model": pick(wm_ckpt), "rla": pick(Path(rla)) if rla else None,
            "policy": pick(Path(policy)) if policy is not None else None}


def build_artifacts(
    data_dir: str | Path,
    encoder_name: str,
    world_model_ckpt: str | Path,
    out: str | Path,
    chunk: int = 8,
    num_reference_demos: int = 5,
    policies: Sequence[str] = ("expert",),
    quantization: Literal["int8", "float16"] = "int8",
    thumb_size: int = 64,
    max_render_frames: int = 128,
    val_fraction: float = 0.1,
    seed: int = 0,
    weights_dtype: Literal["float32", "float16", "int8"] = "float16",
    policy: str | Path | None = None,
    reset_from: Literal["all", "references"] = "all",
    success_calibration: Literal["imagined", "real"] = "imagined",
) -> Path:
    """Build an artifacts bundle from a real dataset and a trained world model.

    Reference demos are the first ``num_reference_demos`` successful train episodes of
    ``policies``; the reset bank holds frame 0 of every episode of ``policies``; every episode
    that is not a reference calibrates the success threshold (train split chooses it, held-out
    split reports its agreement).

    Args:
        data_dir: ``EpisodeStore`` folder with cached ``encoder_name`` features.
        encoder_name: feature folder name.
        world_model_ckpt: RLA-WM (or baseline) checkpoint folder.
        out: destination folder (replaced atomically).
        chunk: ``K`` control steps per env step.
        num_reference_demos: reference videos to keep.
        policies: policies of the reference / reset episodes.
        quantization: ``"int8"`` (per-channel affine) or ``"float16"``.
        thumb_size: render thumbnail side in pixels.
        max_render_frames: cap on render-bank frames.
        val_fraction: held-out fraction of the hash split.
        seed: split seed.
        weights_dtype: storage dtype of the world-model weights.
        policy: a saved :class:`~rla_gym.agents.ActorCritic` folder (the behaviour-cloned base
            that ``examples/train_ppo_in_wm.py`` fine-tunes), shipped as ``<bundle>/policy``; it
            must map ``(N, D)`` features to ``K * A`` actions. Stored with ``weights_dtype``.
        reset_from: ``"all"``: frame 0 of every episode of ``policies`` (each aligned with the
            reference demo whose frame 0 is nearest); ``"references"``: only the reference demos'
            own starts, for tasks whose goal differs per episode (reacher's target), where the
            nearest demo may chase another goal.
        success_calibration: the success estimate's threshold is chosen on ``"imagined"`` end
            states (each calibration episode's real actions replayed in the stored world model
            from its real first frame; what the env will see) or on ``"real"`` final frames. Both
            sets of numbers are recorded.

    Returns:
        The bundle folder.

    Raises:
        EncoderMismatchError: the world model was trained on another encoder's features.
        ValueError: no usable reference demos, or ``chunk`` beyond the model's horizon.
    """
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.world_model import load_predictor

    store = EpisodeStore(data_dir)
    ds = store.manifest()
    fp = store.feature_fingerprint(encoder_name)
    if fp is None:
        raise RLAGymError(
            f"no {encoder_name} features in {data_dir}; run "
            f"`rla-gym encode --data {data_dir} --encoder {encoder_name}`"
        )
    model = load_predictor(world_model_ckpt, expected_fingerprint=fp)
    if chunk < 1 or chunk > int(model.max_horizon):
        raise ValueError(f"chunk={chunk} must be in [1, {model.max_horizon}] (model horizon)")
    if int(model.action_dim) != int(ds["action_dim"]):
        raise ValueError(
            f"world model takes {model.action_dim}-D actions, dataset has {ds['action_dim']}"
        )
    _, val_ids = store.split(val_fraction, seed=seed)
    val_set = set(val_ids)
    # Episodes still waiting for `rla-gym encode` (e.g. a collection in progress) are skipped.
    encoded = [e for e in store.episode_ids() if store.has_features(e, encoder_name)]
    skipped = len(store.episode_ids()) - len(encoded)
    own = [e for e in encoded if e.rsplit("_", 1)[0] in policies]
    feats = {}
    for e in encoded:
        fe = store.load_features(e, encoder_name, expected_fingerprint=fp)
        fe.features = fe.features.astype(np.float16)  # on-disk precision; halves peak memory
        feats[e] = fe
    ref_ids = [e for e in own if e not in val_set and bool(feats[e].success[-1])]
    ref_ids = ref_ids[:num_reference_demos]
    if not ref_ids:
        raise ValueError(
            f"no successful {'/'.join(policies)} train episodes in {data_dir} to use as "
            f"reference demos"
        )
    grid = feats[ref_ids[0]].grid
    n_tok, dim = feats[ref_ids[0]].features.shape[1:]

    # ---- reference rows every K frames, padded with the goal row
    rows = [feats[e].features[_ref_rows(len(feats[e].actions), chunk)].astype(np.float32)
            for e in ref_ids]
    t_ref = max(len(r) for r in rows)
    reference = np.stack([np.concatenate([r, np.repeat(r[-1:], t_ref - len(r), 0)]) for r in rows])
    reference_len = np.array([len(r) for r in rows], np.int64)
    reset_ids = own if reset_from == "all" else ref_ids
    reset = np.stack([feats[e].features[0] for e in reset_ids]).astype(np.float32)

    # ---- quantise and measure what it costs
    if quantization == "int8":
        q_all, scale, offset = quantize_int8(np.concatenate([reference.reshape(-1, n_tok, dim),
                                                             reset]))
        reference_q = q_all[: len(reference) * t_ref].reshape(reference.shape)
        reset_q = q_all[len(reference) * t_ref:]
        reference_dq = dequantize_int8(reference_q, scale, offset)
        reset_dq = dequantize_int8(reset_q, scale, offset)
    elif quantization == "float16":
        reference_q, reset_q = reference.astype(np.float16), reset.astype(np.float16)
        scale, offset = np.ones(dim, np.float32), np.zeros(dim, np.float32)
        reference_dq, reset_dq = reference_q.astype(np.float32), reset_q.astype(np.float32)
    else:
        raise ValueError(f"unknown quantization {quantization!r}; use 'int8' or 'float16'")
    err = np.abs(reference_dq - reference)
    chunk_change = float(_l1(reference[:, 1:], reference[:, :-1]).mean()) if t_ref > 1 else 0.0
    quant = {
        "kind": quantization,
        "mean_abs_error": float(err.mean()),
        "max_abs_error": float(err.max()),
        "mean_abs_feature": float(np.abs(reference).mean()),
        "relative_error": float(err.mean() / max(np.abs(reference).mean(), 1e-12)),
        "mean_l1_between_consecutive_rows": chunk_change,
        "error_vs_row_change": float(err.mean() / max(chunk_change, 1e-12)),
    }

    # ---- reset starts are aligned with the nearest reference demo (itself if it is one)
    ref_frame0 = reference_dq[:, 0]
    reset_demo = np.array(
        [ref_ids.index(e) if e in ref_ids else nearest_demo(reset_dq[i], ref_frame0)
         for i, e in enumerate(reset_ids)], np.int64,
    )
    reset_init = np.array([int(store.read(e, frames=False).meta.get("init_state_id", -1))
                           for e in reset_ids], np.int64)

    # ---- success threshold and reward calibration on non-reference episodes
    calib = [e for e in encoded if e not in ref_ids]
    goal = reference_dq[np.arange(len(ref_ids)), reference_len - 1]
    dists, labels, held, real_l1 = [], [], [], []
    for e in calib:
        f = feats[e].features.astype(np.float32)
        d = nearest_demo(f[0], ref_frame0)
        dists.append(float(_l1(f[-1], goal[d])))
        labels.append(bool(feats[e].success[-1]))
        held.append(e in val_set)
        ep_rows = f[_ref_rows(len(feats[e].actions), chunk)][1:]
        idx = np.minimum(np.arange(1, len(ep_rows) + 1), reference_len[d] - 1)
        real_l1.append(float(_l1(ep_rows, reference_dq[d, idx]).mean()))
    labels_a, held_a = np.array(labels, bool), np.array(held, bool)
    success = _success_record(np.array(dists), labels_a, held_a,
                              "mean L1 of real final-frame features to the aligned demo's goal")
    reward_cal = {
        "real_episode_aligned_l1_mean": float(np.mean(real_l1)) if real_l1 else None,
        "reference_row_change_l1_mean": chunk_change,
        "note": "aligned L1 of real non-reference episodes to their nearest demo; a dreamed "
                "rollout with reward_l1 near this value tracks the demo as well as real data",
    }

    # ---- render bank: real frames every K steps of the reference demos plus the reset frames
    thumbs, pooled = [], []
    for e in ref_ids:
        ep = store.read(e)
        idx = _ref_rows(ep.length, chunk)
        thumbs.append(_thumbnail(ep.frames[idx], thumb_size))
        pooled.append(feats[e].features[idx].astype(np.float32).mean(1))
    for e in reset_ids:
        if e not in ref_ids:
            ep = store.read(e)
            thumbs.append(_thumbnail(ep.frames[:1], thumb_size))
            pooled.append(feats[e].features[:1].astype(np.float32).mean(1))
    render_frames, render_pooled = np.concatenate(thumbs), np.concatenate(pooled)
    if len(render_frames) > max_render_frames:
        keep = np.linspace(0, len(render_frames) - 1, max_render_frames).round().astype(int)
        render_frames, render_pooled = render_frames[keep], render_pooled[keep]

    bank = {
        "reference_q": np.ascontiguousarray(reference_q),
        "reference_len": reference_len,
        "reset_q": np.ascontiguousarray(reset_q),
        "reset_demo": reset_demo,
        "reset_init": reset_init,
        "quant_scale": scale.astype(np.float32),
        "quant_offset": offset.astype(np.float32),
        "render_frames": np.ascontiguousarray(render_frames),
        "render_pooled": render_pooled.astype(np.float16),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        from safetensors.numpy import save_file

        save_file(bank, str(tmp / BANK))
        (tmp / WORLD_MODEL).mkdir()
        for name in _WM_FILES:
            if (Path(world_model_ckpt) / name).exists():
                shutil.copy2(Path(world_model_ckpt) / name, tmp / WORLD_MODEL / name)
        weights = _store_weights(model, tmp / WORLD_MODEL, weights_dtype, reset_dq[:8], chunk)
        if success_calibration == "imagined" and calib:
            # The env applies the threshold to *dreamed* features, which are smoother than real
            # ones; so calibrate on dreams: replay each real episode's actions from its real
            # first frame in the stored (quantised) model and label the end by real success.
            from rla_gym.world_model import load_predictor as _load

            stored = _load(tmp / WORLD_MODEL)
            demos = [nearest_demo(feats[e].features[0].astype(np.float32), ref_frame0)
                     for e in calib]
            imagined = _imagined_goal_distances(stored, [feats[e] for e in calib], goal, demos,
                                                chunk, seed)
            success = {**_success_record(imagined, labels_a, held_a,
                                         "mean L1 of the dreamed final features (the episode's "
                                         "real actions replayed from its real first frame) to "
                                         "the aligned demo's goal"),
                       "real_frames": success}
        policy_info = None
        if policy is not None:
            policy_info = _copy_policy(Path(policy), tmp / POLICY, (int(n_tok), int(dim)),
                                       chunk * int(ds["action_dim"]), weights_dtype)
        sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size
                 for p in tmp.rglob("*") if p.is_file()}
        manifest = {
            "format_version": FORMAT_VERSION,
            "sim": ds["sim"],
            "task": ds["task"],
            "resolution": ds.get("resolution"),
            "encoder": encoder_name,
            "encoder_fingerprint": fp,
            "world_model_kind": getattr(model, "kind", ""),
            "chunk": chunk,
            "action_dim": int(ds["action_dim"]),
            "action_low": list(map(float, ds.get("action_low", [-1.0] * int(ds["action_dim"])))),
            "action_high": list(map(float, ds.get("action_high", [1.0] * int(ds["action_dim"])))),
            "grid": list(grid),
            "num_tokens": int(n_tok),
            "feature_dim": int(dim),
            "max_episode_steps": int(t_ref - 1),
            "reference": {"episodes": ref_ids, "rows": int(t_ref),
                          "lengths": reference_len.tolist()},
            "reset": {"from": reset_from, "episodes": reset_ids,
                      "init_state_ids": reset_init.tolist()},
            "render": {"frames": len(render_frames), "thumb_size": thumb_size},
            "quantization": quant,
            "weights": weights,
            "success": success,
            "reward_calibration": reward_cal,
            "policy": policy_info,
            "training": _training_record(Path(world_model_ckpt), policy),
            "files": {BANK: {"sha256": _sha256(tmp / BANK), "bytes": sizes[BANK]}},
            "size_bytes": sizes,
            "total_bytes": sum(sizes.values()),
            "split": {"val_fraction": val_fraction, "seed": seed},
            "skipped_unencoded_episodes": skipped,
            "versions": _versions(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        save_json(manifest, tmp / MANIFEST)
        if out.exists():
            old = out.with_name(f"{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main() -> None:
    """``python -m rla_gym.envs.artifacts --data ... --world-model ... --out ...``."""
    import tyro

    cfg = tyro.cli(BuildArtifactsConfig)
    kw = dataclasses.asdict(cfg)
    path = build_artifacts(kw.pop("data"), kw.pop("encoder"), kw.pop("world_model"),
                           kw.pop("out"), **kw)
    m = load_json(path / MANIFEST)
    keys = ("size_bytes", "total_bytes", "quantization", "weights", "success")
    print(json.dumps({k: m[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
