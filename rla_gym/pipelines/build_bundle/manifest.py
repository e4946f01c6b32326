"""Step 8 of a build: ``manifest.json``, everything the other steps found, with checksums,
sizes and versions."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from rla_gym.envs.artifacts import BANK, FORMAT_VERSION
from rla_gym.features.base import sha256_file
from rla_gym.pipelines.build_bundle.banks import BodyBanks, FeatureBanks
from rla_gym.pipelines.build_bundle.config import BuildBundleConfig
from rla_gym.pipelines.build_bundle.sources import EpisodeSelection
from rla_gym.utils.io import load_json
from rla_gym.utils.provenance import package_versions

__all__ = ["make_manifest"]

# Versions recorded in the manifest: what reads the bundle back.
_VERSIONED = ("rla-gym", "numpy", "torch", "gymnasium", "safetensors")


def _training_record(wm_ckpt: Path, policy: Path | None) -> dict[str, Any]:
    """What trained the bundle's parts and how long it took (from their ``meta.json``).

    A world model warm-started from another (``train-wm --init-from``) records that source's own
    training under ``world_model.warm_start``, and the RLA the source was trained with: the
    bundle's cost is the chain, not the last run alone.
    """
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

    def meta_of(folder: Path | None) -> dict[str, Any] | None:
        if folder is None or not (folder / "meta.json").exists():
            return None
        return load_json(folder / "meta.json")

    def pick(meta: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if meta is None else {k: meta[k] for k in keys if k in meta}

    def chain(folder: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``(world model record, its RLA's record)`` of a world-model folder, following its
        warm start; a bundle's ``world_model/`` folder is read from the bundle's manifest."""
        bundle = folder.parent / "manifest.json"
        if folder.name == "world_model" and bundle.exists():
            training = load_json(bundle).get("training", {})
            return training.get("world_model"), training.get("rla")
        meta = meta_of(folder)
        if meta is None:
            return None, None
        record, rla = pick(meta), meta.get("rla_checkpoint")
        rla_record = pick(meta_of(Path(rla))) if rla else None
        source = meta.get("init_from")  # train-wm records its warm start's checkpoint
        if source and Path(source).exists():
            record["warm_start"], source_rla = chain(Path(source))
            record["warm_start_from"] = str(source)
            rla_record = rla_record or source_rla
        return record, rla_record

    world_model, rla = chain(wm_ckpt)
    return {
        "world_model": world_model,
        "rla": rla,
        "policy": pick(meta_of(None if policy is None else Path(policy))),
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
    body: BodyBanks | None = None,
    no_body: str | None = None,
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
        body: :func:`body_banks` (``None``: the bank carries no body vectors).
        no_body: why it carries none (recorded as ``proprio_missing``).
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
        # The real task's control-step limit (its evaluation horizon), for dreams that should run
        # as long as a real evaluation does.
        "task_max_steps": None if dataset.get("max_steps") is None else int(dataset["max_steps"]),
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
        # The body vector of the bank's reset_proprio / reference_proprio (sim, fields, dim).
        "proprio": None if body is None else body.spec.to_dict(),
        **({} if no_body is None else {"proprio_missing": no_body}),
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
