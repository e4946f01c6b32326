"""Artifacts bundle: everything a dreamed environment needs, in one small folder.

Layout::

    manifest.json        sim, task, encoder fingerprint, chunk K, action bounds, grid, reward and
                         success calibration, quantisation error, file checksums, versions
    world_model/         RLA-WM checkpoint (the frozen RLA is embedded); loads with
                         rla_gym.world_model.load_predictor / RLAWorldModel.from_pretrained
    bank.safetensors     reset bank, reference demos (every K-th frame) and the render bank
    policy/              optional: behaviour-cloned base policy (ActorCritic folder) that the WMRL
                         main job fine-tunes in the dream
    decoder/             optional: frame decoder (features -> pixels) that renders dreamed states,
                         added to a built bundle with ``rla-gym add-decoder``

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
    reset_proprio      float32 (M, P)       body vector (:mod:`rla_gym.data.proprio`) of each
                                            reset start's frame 0
    reference_proprio  float32 (R, T_ref, P)  body vectors at the reference rows (padded alike)

The two body tensors are there when the dataset's simulator has a body vector and its episodes
record proprio; the manifest's ``proprio`` (``{"sim", "fields", "dim"}``) names their entries.
Bundles built before them load with ``reset_proprio = reference_proprio = None``. A world model
that dreams the body (``proprio_fields``) needs a bundle whose body has the same fields.

With ``quantization="float16"`` the ``*_q`` tensors are float16 and scale/offset are unused.

This module is the format and its loader: what an env needs. Bundles are built by
:mod:`rla_gym.pipelines.build_bundle` (``rla-gym build-bundle``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rla_gym.errors import CorruptFileError, EncoderMismatchError, RLAGymError
from rla_gym.features.base import sha256_file
from rla_gym.utils.io import load_json

if TYPE_CHECKING:  # the loader imports torch lazily; the bundle format does not need it
    from rla_gym.decoder import FrameDecoder
    from rla_gym.world_model.baselines import Predictor

__all__ = [
    "ASSETS_DIR",
    "BANK",
    "DECODER",
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_BUNDLE_BYTES",
    "MODEL_FILES",
    "POLICY",
    "PROGRESS",
    "WORLD_MODEL",
    "Artifacts",
    "ArtifactsNotFoundError",
    "dequantize_int8",
    "dreamed_body_fields",
    "how_to_build",
    "load_artifacts",
    "nearest_demo",
    "quantize_int8",
    "resolve_artifacts",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BANK = "bank.safetensors"
WORLD_MODEL = "world_model"
POLICY = "policy"
PROGRESS = "progress"
DECODER = "decoder"
BODY = "body"
MAX_BUNDLE_BYTES = 10_000_000
"""Size budget of an embedded bundle (``total_bytes`` in its manifest)."""
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# The files of a model folder (world model, policy) that a bundle keeps: only what loading needs;
# optimizer/train state would triple the bundle for nothing.
MODEL_FILES = ("config.json", "model.safetensors", "meta.json")


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
        reset_proprio: ``float32 (M, P)`` body vector of each reset start (``None``: the bundle
            carries no body).
        reference_proprio: ``float32 (R, T_ref, P)`` body vectors at the reference rows.
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
    reset_proprio: np.ndarray | None = None
    reference_proprio: np.ndarray | None = None

    @property
    def proprio_fields(self) -> tuple[str, ...]:
        """Names of the body vector the bank carries (``()``: none, e.g. an older bundle)."""
        body = self.manifest.get("proprio")
        return tuple(body["fields"]) if body else ()

    @property
    def chunk(self) -> int:
        """``K``: control steps per env step."""
        return int(self.manifest["chunk"])

    @property
    def action_dim(self) -> int:
        """``A``: action size of one control step."""
        return int(self.manifest["action_dim"])

    @property
    def max_episode_steps(self) -> int:
        """The bundle's episode horizon in env steps (chunks): the one horizon of its envs.

        Recorded in the manifest at build time (the reference demos' length in chunks); older
        manifests without it fall back to the reference bank's row count minus the start row.
        """
        return int(self.manifest.get("max_episode_steps", self.reference.shape[1] - 1))

    @property
    def success_threshold(self) -> float | None:
        """Calibrated L1-to-goal threshold of the success estimate (``None`` if uncalibrated)."""
        thr = self.manifest.get("success", {}).get("threshold")
        return None if thr is None else float(thr)

    def load_world_model(
        self, device: str = "cpu", checkpoint: str | Path | None = None
    ) -> Predictor:
        """The bundle's world model (or ``checkpoint`` in its place), checked against the bank.

        Args:
            device: where to load it.
            checkpoint: another world-model checkpoint to dream with (ablations, baselines); it
                must read the same encoder's features and take the bundle's action chunks.

        Raises:
            EncoderMismatchError: the checkpoint was trained on another encoder's features.
            CorruptFileError: the bundle's own model does not fit its manifest.
            ValueError: ``checkpoint`` takes other actions or shorter chunks than the bundle.
        """
        from rla_gym.world_model import load_predictor

        path = self.path / WORLD_MODEL if checkpoint is None else Path(checkpoint)
        model = load_predictor(
            path,
            expected_fingerprint=self.manifest["encoder_fingerprint"],
            device=device,
        )
        if int(model.action_dim) != self.action_dim or self.chunk > int(model.max_horizon):
            msg = (
                f"world model {path} takes {model.action_dim}-D actions up to "
                f"{model.max_horizon} steps, but bundle {self.path} has action_dim="
                f"{self.action_dim}, chunk={self.chunk}"
            )
            if checkpoint is not None:
                raise ValueError(msg + "; train it on this bundle's task")
            raise CorruptFileError(msg + "; rebuild the bundle (rla-gym build-bundle)")
        body = tuple(getattr(model, "proprio_fields", ()))
        if body and body != self.proprio_fields:
            carried = (
                f"body vectors of other fields ({', '.join(self.proprio_fields)})"
                if self.proprio_fields
                else "no body vectors (manifest.json 'proprio')"
            )
            msg = (
                f"world model {path} dreams the robot's body ({', '.join(body)}) but bundle "
                f"{self.path} carries {carried}"
            )
            if checkpoint is not None:
                raise ValueError(msg + "; dream with a checkpoint trained on this bundle's data")
            raise CorruptFileError(
                msg + "; rebuild the bundle (rla-gym build-bundle) from a dataset that records "
                "proprio"
            )
        return model

    @property
    def has_progress_head(self) -> bool:
        """Whether the bundle ships a learned progress / success head (``progress/``)."""
        return (self.path / PROGRESS / "config.json").exists()

    def load_progress_head(self, device: str = "cpu") -> Any:
        """The bundle's progress / success head, checked against the bank's encoder.

        Raises:
            FileNotFoundError: the bundle has no ``progress/`` (says how to add one).
            EncoderMismatchError: the head was trained on another encoder's features.
        """
        from rla_gym.reward.progress import ProgressHead

        if not self.has_progress_head:
            raise FileNotFoundError(
                f"bundle {self.path} has no progress head; train one with `rla-gym "
                "train-progress --data <dataset>` and add it with `rla-gym add-progress-head "
                f"--bundle {self.path} --head <out>/checkpoint`"
            )
        return ProgressHead.from_pretrained(
            self.path / PROGRESS,
            expected_fingerprint=self.manifest["encoder_fingerprint"],
            device=device,
        )

    @property
    def has_body_model(self) -> bool:
        """Whether the bundle ships the body's own dynamics (``body/``, ``rla-gym
        add-body-model``)."""
        return self.manifest.get(BODY) is not None

    def load_body_model(self, device: str = "cpu") -> Any:
        """The bundle's body model (:class:`~rla_gym.world_model.body.BodyDynamics`).

        Raises:
            FileNotFoundError: the bundle has no body model (says how to add one).
        """
        from rla_gym.world_model.body import BodyDynamics

        if not self.has_body_model:
            raise FileNotFoundError(
                f"bundle {self.path} has no body model; train one with `rla-gym train-body "
                f"--data <dataset> --out <out>` and add it with `rla-gym add-body-model --bundle "
                f"{self.path} --model <out>/checkpoint`"
            )
        return BodyDynamics.from_pretrained(self.path / BODY, device=device)

    @property
    def has_decoder(self) -> bool:
        """Whether the bundle ships a frame decoder (``decoder/``, ``rla-gym add-decoder``)."""
        return self.manifest.get(DECODER) is not None

    def load_decoder(self, device: str = "cpu") -> FrameDecoder:
        """The bundle's frame decoder, checked against its checksum and the bank's encoder.

        Raises:
            ArtifactsNotFoundError: the bundle has no decoder (says how to add one).
            CorruptFileError: the decoder's weights do not match the manifest's checksum.
            EncoderMismatchError: the decoder was trained on another encoder's features or grid.
        """
        from rla_gym.decoder import FrameDecoder

        if not self.has_decoder:
            raise ArtifactsNotFoundError(
                f"bundle {self.path} has no frame decoder; train one with `rla-gym train-decoder "
                f"--data <dataset>` and add it with `rla-gym add-decoder --bundle {self.path} "
                f"--decoder <out>/checkpoint`, or render with render_backend='nearest'"
            )
        weights = self.path / DECODER / "model.safetensors"
        want = self.manifest[DECODER].get("sha256")
        if not weights.exists() or want is None or sha256_file(weights) != want:
            raise CorruptFileError(
                f"{weights} is missing or does not match the checksum in {MANIFEST}; re-add the "
                f"decoder with `rla-gym add-decoder --bundle {self.path} --decoder <checkpoint>`"
            )
        return FrameDecoder.from_pretrained(
            self.path / DECODER,
            device=device,
            expected_fingerprint=self.manifest["encoder_fingerprint"],
            expected_grid=tuple(self.manifest["grid"]),
            expected_feature_dim=int(self.manifest["feature_dim"]),
        )


def how_to_build(out: str | Path, sim: str = "<sim>") -> str:
    """The command that builds a bundle at ``out`` (used in error messages)."""
    return (
        f"rla-gym build-bundle --data data/<{sim} dataset> "
        f"--world-model runs/<wm>/checkpoint --out {out}"
    )


def resolve_artifacts(artifacts: str | Path | None, suite: str) -> Path:
    """The bundle folder: ``artifacts`` itself, or the suite's embedded default.

    Raises:
        ArtifactsNotFoundError: the folder holds no bundle (the message says how to build it).
    """
    path = Path(artifacts) if artifacts is not None else ASSETS_DIR / suite
    if not (path / "manifest.json").exists():
        where = "embedded default " if artifacts is None else ""
        raise ArtifactsNotFoundError(
            f"artifacts not built yet: no {where}bundle for suite {suite!r} at {path}. Build it "
            f"with: {how_to_build(path, suite.split('-')[0])} — or pass artifacts=<bundle folder>"
        )
    return path


def dreamed_body_fields(path: str | Path) -> tuple[str, ...]:
    """The body fields the bundle's world model dreams (``()``: features only), read from its
    config without loading it. A bundle's manifest (:attr:`Artifacts.proprio_fields`) records
    its dataset's body whether or not the world model dreams it."""
    config = load_json(Path(path) / WORLD_MODEL / "config.json")
    return tuple(config.get("world_model", {}).get("proprio_fields") or ())


def load_artifacts(path: str | Path) -> Artifacts:
    """Read and validate a bundle folder written by
    :func:`rla_gym.pipelines.build_bundle.build_bundle`.

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
    if not bank_path.exists() or want is None or sha256_file(bank_path) != want:
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
        reset_proprio=_float32(bank.get("reset_proprio")),
        reference_proprio=_float32(bank.get("reference_proprio")),
    )
    n, d = int(manifest["num_tokens"]), int(manifest["feature_dim"])
    if art.reference.shape[2:] != (n, d) or art.reset_features.shape[1:] != (n, d):
        raise CorruptFileError(f"{bank_path}: feature shapes disagree with ({n}, {d}) in manifest")
    _check_body_bank(art, bank_path)
    if art.reset_demo.max(initial=0) >= len(art.reference):
        raise CorruptFileError(
            f"{bank_path}: reset_demo points past the {len(art.reference)} demos"
        )
    return art


def _float32(x: np.ndarray | None) -> np.ndarray | None:
    return None if x is None else x.astype(np.float32)


def _check_body_bank(art: Artifacts, bank_path: Path) -> None:
    """The body tensors agree with the manifest's ``proprio`` and the feature banks.

    Raises:
        CorruptFileError: body tensors without a manifest record, or the other way round, or
            shapes that disagree.
    """
    fields = art.proprio_fields
    has = (art.reset_proprio is not None, art.reference_proprio is not None)
    if not fields:
        if any(has):
            raise CorruptFileError(
                f"{bank_path} holds body vectors but {MANIFEST} names no 'proprio'; rebuild the "
                "bundle"
            )
        return
    p = len(fields)
    want = {
        "reset_proprio": (len(art.reset_features), p),
        "reference_proprio": (*art.reference.shape[:2], p),
    }
    got = {"reset_proprio": art.reset_proprio, "reference_proprio": art.reference_proprio}
    for name, shape in want.items():
        x = got[name]
        if x is None or x.shape != shape or int(art.manifest["proprio"].get("dim", p)) != p:
            raise CorruptFileError(
                f"{bank_path}: {name} should be float32 {shape} ({', '.join(fields)}, as "
                f"{MANIFEST} 'proprio' says), got {None if x is None else x.shape}; rebuild "
                "the bundle"
            )


def nearest_demo(frame0: np.ndarray, ref_frame0: np.ndarray) -> int:
    """Reference demo whose first frame is closest in mean L1 (same init state -> same scene).

    The rule that aligns every reset-bank start with its reference demo when a bundle is built;
    a planner acting in the real simulator aligns its episode's first frame the same way.

    Args:
        frame0: ``(N, D)`` features of an episode's first frame.
        ref_frame0: ``(R, N, D)`` first-frame features of the reference demos.
    """
    return int(np.argmin(np.abs(frame0[None] - ref_frame0).mean(axis=(-2, -1))))
