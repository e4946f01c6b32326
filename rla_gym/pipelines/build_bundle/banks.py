"""Steps 3 and 5 of a build: the feature banks (reference rows and reset frames, quantised,
the storage error measured), their body vectors, the render bank (thumbnails of real frames),
and the bank file that holds them (tensor names and dtypes: :mod:`rla_gym.envs.artifacts`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rla_gym.envs.artifacts import dequantize_int8, nearest_demo, quantize_int8
from rla_gym.pipelines.build_bundle.sources import EpisodeSelection

if TYPE_CHECKING:
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.data.proprio import BodySpec

__all__ = [
    "BodyBanks",
    "FeatureBanks",
    "body_banks",
    "feature_banks",
    "mean_l1",
    "ref_rows",
    "render_bank",
    "write_bank",
]


# --------------------------------------------------------------------------- small helpers
def ref_rows(length: int, chunk: int) -> list[int]:
    """Frame indices ``0, K, 2K, ...`` plus the final frame ``length`` if it is not on the grid."""
    rows = list(range(0, length + 1, chunk))
    if rows[-1] != length:
        rows.append(length)
    return rows


def pad_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Per-demo reference rows ``[(T_i, ...)]`` -> ``(R, max T_i, ...)``, each demo padded by
    repeating its final (goal) row: the one padding rule the features and the bodies share, so
    a row index reads the same frame in both."""
    t_ref = max(len(r) for r in rows)
    return np.stack([np.concatenate([r, np.repeat(r[-1:], t_ref - len(r), 0)]) for r in rows])


def mean_l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean |a - b| over the last two axes: ``(..., N, D)`` -> ``(...)``."""
    return np.abs(a - b).mean(axis=(-2, -1))


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
        feats[e].features[ref_rows(len(feats[e].actions), chunk)].astype(np.float32)
        for e in ref_ids
    ]
    reference = pad_rows(rows)
    t_ref = reference.shape[1]
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
    chunk_change = float(mean_l1(reference[:, 1:], reference[:, :-1]).mean()) if t_ref > 1 else 0.0
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


# --------------------------------------------------------------------------- 3b. body banks
@dataclass(frozen=True)
class BodyBanks:
    """The body vectors (:mod:`rla_gym.data.proprio`) at the frames the feature banks hold.

    Stored in float32: ``P`` numbers per row are nothing beside the ``N x D`` features, and a
    quantised body would move the arm the dream starts from.

    Attributes:
        spec: the dataset simulator's body vector (the manifest's ``proprio`` record).
        reference: ``float32 (R, T_ref, P)`` at the reference rows, padded like the features.
        reset: ``float32 (M, P)`` frame 0 of each reset start.
        calibration: ``float32 (E, P)`` frame 0 of each calibration episode (a body model's
            dreamed replays start from it).
    """

    spec: BodySpec
    reference: np.ndarray
    reset: np.ndarray
    calibration: np.ndarray


def body_banks(
    data: str | Path, sim: str, sel: EpisodeSelection, chunk: int, model_fields: tuple[str, ...]
) -> tuple[BodyBanks | None, str | None]:
    """The body vectors of the reference rows, reset starts and calibration starts.

    A dataset without a body (a simulator with no body vector, episodes recorded without
    proprio) gives no body banks, which is fine for a world model that dreams features only.

    Args:
        data: the dataset folder.
        sim: its simulator (``dataset.json``'s ``"sim"``).
        sel: :func:`~rla_gym.pipelines.build_bundle.sources.select_episodes`.
        chunk: ``K``.
        model_fields: the world model's ``proprio_fields`` (empty: features only).

    Returns:
        ``(banks, None)``, or ``(None, why)`` when the dataset has no body.

    Raises:
        ValueError: the world model dreams the body but the dataset has none, or one of other
            fields.
    """
    from rla_gym.data.feature_episodes import load_body
    from rla_gym.data.proprio import body_spec

    ids = list(dict.fromkeys([*sel.reference, *sel.reset, *sel.calibration]))
    try:
        spec = body_spec(sim)
        bodies, fields = load_body(data, ids)
    except ValueError as err:
        if model_fields:
            raise ValueError(
                f"the world model dreams the robot's body ({', '.join(model_fields)}) but the "
                f"bundle cannot carry it: {err}"
            ) from err
        return None, str(err)
    if model_fields and tuple(model_fields) != fields:
        raise ValueError(
            f"the world model dreams a body of fields ({', '.join(model_fields)}) but {data} "
            f"records a {sim} body ({', '.join(fields)}); train the world model on this dataset"
        )
    body = dict(zip(ids, bodies, strict=True))
    rows = [body[e][ref_rows(len(sel.features[e].actions), chunk)] for e in sel.reference]
    reference = pad_rows(rows)

    def first(eids: list[str]) -> np.ndarray:  # (E, P) frame 0 of each episode; E may be 0
        return np.array([body[e][0] for e in eids], np.float32).reshape(len(eids), spec.dim)

    banks = BodyBanks(spec, reference.astype(np.float32), first(sel.reset), first(sel.calibration))
    return banks, None


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
        idx = ref_rows(ep.length, chunk)
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


def write_bank(
    path: Path,
    banks: FeatureBanks,
    frames: np.ndarray,
    pooled: np.ndarray,
    body: BodyBanks | None = None,
) -> None:
    """``bank.safetensors`` (tensor names and dtypes: :mod:`rla_gym.envs.artifacts`)."""
    from safetensors.numpy import save_file

    extra = {}
    if body is not None:
        extra = {
            "reset_proprio": np.ascontiguousarray(body.reset),
            "reference_proprio": np.ascontiguousarray(body.reference),
        }
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
            **extra,
        },
        str(path),
    )
