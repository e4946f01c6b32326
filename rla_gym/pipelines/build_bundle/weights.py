"""Steps 6-7 of a build: model folders copied into a bundle with their weights in the bundle's
dtype: the world model (prediction change measured) and the optional base policy (spaces
checked). Parts added to a built bundle (:mod:`rla_gym.pipelines.build_bundle.parts`) are copied
the same way."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rla_gym.envs.artifacts import MODEL_FILES
from rla_gym.errors import RLAGymError
from rla_gym.features.base import sha256_file
from rla_gym.utils.io import load_json, save_json

if TYPE_CHECKING:
    from rla_gym.world_model.baselines import Predictor

__all__ = ["copy_model_files", "copy_policy", "rewrite_weights", "store_weights"]


def rewrite_weights(path: Path, dtype: str) -> None:
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


def copy_model_files(src: Path, dst: Path) -> None:
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


# --------------------------------------------------------------------------- 6. weights
def store_weights(
    model: Predictor,
    folder: Path,
    dtype: str,
    s_t: np.ndarray,
    chunk: int,
    proprio: np.ndarray | None = None,
) -> dict[str, Any]:
    """Rewrite ``folder/model.safetensors`` in ``dtype`` and measure what that does to predictions.

    The check predicts one chunk of zero actions from ``s_t (B, N, D)`` with the same noise
    using ``model`` (the original weights) and the re-loaded folder; ``proprio (B, P)`` is the
    body of those starts, for a world model that dreams the body (``None`` otherwise).

    Returns:
        The manifest's ``weights`` record.
    """
    if dtype == "float32":
        return {"dtype": "float32", "prediction_rel_error": 0.0}
    if dtype not in ("float16", "int8"):
        raise ValueError(f"weights_dtype must be 'float32', 'float16' or 'int8', got {dtype!r}")
    import torch

    from rla_gym.world_model import load_predictor

    rewrite_weights(folder / "model.safetensors", dtype)
    small = load_predictor(folder)
    s = torch.from_numpy(s_t).float()
    acts = torch.zeros(len(s), chunk, int(model.action_dim))
    body = {} if proprio is None else {"proprio": torch.from_numpy(proprio[: len(s)]).float()}
    a = model.predict(s, acts, generator=torch.Generator().manual_seed(0), **body)
    b = small.predict(s, acts, generator=torch.Generator().manual_seed(0), **body)
    other = model.predict(s, acts, generator=torch.Generator().manual_seed(1), **body)
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
    copy_model_files(src, dst)
    rewrite_weights(dst / "model.safetensors", dtype)
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
