"""The pipeline: every step of a build, in order, into a folder that replaces ``cfg.out``
atomically (the steps: :mod:`rla_gym.pipelines.build_bundle`)."""

from __future__ import annotations

from pathlib import Path

from rla_gym.envs.artifacts import BANK, MANIFEST, POLICY, WORLD_MODEL
from rla_gym.pipelines.build_bundle.banks import body_banks, feature_banks, render_bank, write_bank
from rla_gym.pipelines.build_bundle.calibration import calibrate_dreamed, calibrate_real
from rla_gym.pipelines.build_bundle.config import BuildBundleConfig
from rla_gym.pipelines.build_bundle.manifest import make_manifest
from rla_gym.pipelines.build_bundle.sources import open_sources, select_episodes
from rla_gym.pipelines.build_bundle.weights import copy_model_files, copy_policy, store_weights
from rla_gym.utils.io import atomic_folder, save_json

__all__ = ["build_bundle"]


def build_bundle(cfg: BuildBundleConfig) -> Path:
    """Build an artifacts bundle from a real dataset and a trained world model.

    Runs the steps of this package in order (see its docstring) into a temporary folder
    that replaces ``cfg.out`` only once the manifest is written.

    Returns:
        The bundle folder ``cfg.out``; :func:`rla_gym.envs.artifacts.load_artifacts` reads it.

    Raises:
        EncoderMismatchError: the world model was trained on another encoder's features.
        RLAGymError: the dataset has no features of ``cfg.encoder``, or ``cfg.policy`` is not a
            saved policy folder.
        ValueError: no usable reference demos, ``cfg.chunk`` beyond the model's horizon, a
            policy for other spaces, or a world model that dreams the body from a dataset
            without one (or of other fields).
    """
    store, ds, fp, model = open_sources(cfg)
    sel = select_episodes(store, fp, cfg)
    banks = feature_banks(store, sel, cfg.chunk, cfg.quantization)
    model_body = tuple(getattr(model, "proprio_fields", ()))
    body, no_body = body_banks(cfg.data, str(ds.get("sim", "")), sel, cfg.chunk, model_body)
    # A body model is sampled (weights check, dreamed calibration) from the real start's body.
    start_body = None if body is None or not model_body else body.reset[:8]
    real = calibrate_real(sel, banks, cfg.chunk)
    frames, pooled = render_bank(store, sel, cfg.chunk, cfg.thumb_size, cfg.max_render_frames)
    with atomic_folder(cfg.out) as tmp:
        write_bank(tmp / BANK, banks, frames, pooled, body)
        copy_model_files(Path(cfg.world_model), tmp / WORLD_MODEL)
        weights = store_weights(
            model, tmp / WORLD_MODEL, cfg.weights_dtype, banks.reset[:8], cfg.chunk, start_body
        )
        success = real.success
        if cfg.success_calibration == "imagined" and sel.calibration:
            from rla_gym.world_model import load_predictor

            stored = load_predictor(tmp / WORLD_MODEL)  # what the env will dream with
            replay_body = body.calibration if body is not None and model_body else None
            success = calibrate_dreamed(stored, sel, banks, real, cfg.chunk, cfg.seed, replay_body)
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
            body,
            no_body,
        )
        save_json(manifest, tmp / MANIFEST)
    return Path(cfg.out)
