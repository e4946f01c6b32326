"""Parts added to a built bundle without rebuilding it: the progress head and the frame
decoder, each checked against the bundle before the bundle is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rla_gym.envs.artifacts import BODY, DECODER, MANIFEST, MAX_BUNDLE_BYTES, PROGRESS
from rla_gym.errors import RLAGymError
from rla_gym.features.base import sha256_file
from rla_gym.pipelines.build_bundle.weights import copy_model_files, rewrite_weights
from rla_gym.utils.io import atomic_folder, load_json, save_json

__all__ = ["add_body_model", "add_decoder", "add_part", "add_progress_head"]


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
        copy_model_files(Path(src), tmp)
        rewrite_weights(tmp / "model.safetensors", dtype)
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


def _meta(src: str | Path) -> dict[str, Any]:
    """A model folder's training record (``meta.json``), or ``{}`` without one."""
    path = Path(src) / "meta.json"
    return load_json(path) if path.exists() else {}


def _record(src: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """What the manifest says of a part: where it came from and ``keys`` of its training record."""
    meta = _meta(src)
    return {"source": str(src), **{k: meta[k] for k in keys if k in meta}}


def add_progress_head(bundle: str | Path, head: str | Path, dtype: str = "int8") -> dict[str, Any]:
    """Ship a trained progress / success head in a bundle (``reward_mode="progress"``).

    Raises:
        EncoderMismatchError: the head reads another encoder's features than the bundle's.
    """
    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.reward.progress import ProgressHead

    fp = load_artifacts(bundle).manifest["encoder_fingerprint"]
    ProgressHead.from_pretrained(head, expected_fingerprint=fp)  # refuses a mismatched head
    keys = ("step", "wall_clock_s", "val_metrics", "train_episodes", "val_episodes", "data")
    manifest = add_part(bundle, PROGRESS, head, dtype, _record(head, keys))
    load_artifacts(bundle).load_progress_head()  # what the env will load, stored weights included
    return manifest


def add_body_model(bundle: str | Path, model: str | Path, dtype: str = "float32") -> dict[str, Any]:
    """Ship the body's own dynamics in a bundle whose world model dreams the body: the dream's
    next body then comes from it (``RLAWorldConfig.body_dynamics``).

    Raises:
        ValueError: a features-only bundle, or a body model of other fields, chunk or actions
            than the bundle's (checked before the bundle is touched).
    """
    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.world_model.body import BodyDynamics

    art = load_artifacts(bundle)
    m = art.manifest
    # The bank may store bodies for a features-only world model; what matters is what it dreams.
    fields = tuple(getattr(art.load_world_model(), "proprio_fields", ()))
    c = BodyDynamics.from_pretrained(model).config
    want = (fields, int(m["chunk"]), int(m["action_dim"]))
    if not fields or (c.proprio_fields, c.chunk, c.action_dim) != want:
        raise ValueError(
            f"the body model at {model} reads a body of {c.proprio_fields}, chunks of "
            f"{c.chunk} x {c.action_dim}; the bundle {bundle} dreams "
            + (f"a body of {want[0]}, chunks of {want[1]} x {want[2]}" if fields else
               "features only (rebuild it with a world model trained with --proprio)")
        )  # fmt: skip
    keys = ("wall_clock_s", "val_r2", "train_episodes", "val_episodes", "data")
    manifest = add_part(bundle, BODY, model, dtype, _record(model, keys))
    load_artifacts(bundle).load_body_model()  # what the env will load, stored weights included
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
        copy_model_files(Path(decoder), stored_dir)
        rewrite_weights(stored_dir / "model.safetensors", dtype)
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
    meta = _meta(decoder)
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
