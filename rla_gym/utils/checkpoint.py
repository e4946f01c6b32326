"""Checkpoint folders: ``config.json`` + ``model.safetensors`` (+ optimizer and training state).

Layout of a checkpoint folder::

    config.json          the model config (a dataclass, stored with dataclasses.asdict) under a
                         ``"type"`` key naming the model (``"rla"``, ``"rla-wm"``, ...)
    model.safetensors    model weights (safetensors: no pickle, so loading cannot run code)
    meta.json            free-form provenance: encoder fingerprint, wall-clock, metrics, ...
    optimizer.pt         optimizer state (optional; only needed to resume training)
    train_state.pt       step and RNG states (optional; only needed to resume training)

Folders are written atomically (:func:`rla_gym.utils.io.atomic_folder`): everything goes into a
sibling ``<name>.tmp-XXXX`` folder which is then renamed into place. A folder cannot be renamed over
a non-empty folder, so an existing checkpoint is first moved aside to ``<name>.old-XXXX`` and
deleted only after the new one is in place; :func:`load_checkpoint` falls back to that backup if a
crash hit the gap between the renames.

Every model class that writes checkpoints declares its type once, as a ``MODEL_TYPE`` class
attribute next to the model; :func:`save_checkpoint` writes it, each class's loader checks it with
:func:`model_config`, and :func:`rla_gym.load_model` dispatches on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rla_gym.errors import CorruptFileError, MissingWeightsError, ModelTypeError
from rla_gym.utils.io import atomic_folder, save_json

__all__ = [
    "TYPE_KEY",
    "Checkpoint",
    "config_type",
    "dequantize_state_dict",
    "has_checkpoint",
    "load_checkpoint",
    "load_sb3_model",
    "model_config",
    "quantize_state_dict",
    "read_config",
    "save_checkpoint",
    "typed_config",
]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
META = "meta.json"
OPTIMIZER = "optimizer.pt"
TRAIN_STATE = "train_state.pt"
# A weight stored as int8 carries its per-row scale under this suffix; loaders dequantise it.
INT8_SCALE = ".__int8_scale"
TYPE_KEY = "type"
"""The ``config.json`` key naming the model (LeRobot's ``type``)."""
# Before TYPE_KEY, world models and the progress head named their type under "model", and the
# policy and PPO under a versioned "format"; the RLA and the frame decoder named none.
_LEGACY_TYPE_KEY = "model"
_LEGACY_FORMATS = {"rla_gym.agents.ActorCritic/1": "actor-critic", "rla_gym.agents.PPO/1": "ppo"}


def quantize_state_dict(
    state: dict[str, torch.Tensor], min_numel: int = 4096, group: int = 32
) -> dict[str, torch.Tensor]:
    """Symmetric int8 storage of the large float tensors of a state dict (~3.8x smaller).

    Each tensor with at least ``min_numel`` elements is stored as ``int8`` with one ``float16``
    scale per ``group`` consecutive values of its row (per row if the row does not divide), so
    ``w ≈ q * scale`` with error at most ``scale / 2``; small groups keep one outlier from
    coarsening a whole row. A row is the last axis of a matrix and everything after the first axis
    of a higher-rank tensor: a conv kernel ``(out, in, 3, 3)`` grouped along its last axis would
    carry one scale per 3 weights. Smaller float tensors (biases, norms, statistics) stay
    ``float32``. :func:`load_checkpoint` undoes it.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not v.is_floating_point() or v.numel() < min_numel or v.dim() < 2:
            out[k] = v.float() if v.is_floating_point() else v
            continue
        rows = v.reshape(v.shape[0], -1)
        last = rows.shape[-1]
        g = group if last % group == 0 else last
        w = rows.float().reshape(rows.shape[0], last // g, g)
        scale = (w.abs().amax(dim=-1, keepdim=True) / 127.0).clamp_min(1e-12)
        q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
        out[k] = q.reshape(v.shape).contiguous()
        out[k + INT8_SCALE] = scale.squeeze(-1).half().contiguous()  # (rows, groups)
    return out


def dequantize_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_state_dict` (and a cast of float16 tensors to float32)."""
    out = {}
    for k, v in state.items():
        if k.endswith(INT8_SCALE):
            continue
        scale = state.get(k + INT8_SCALE)
        if scale is not None:  # one scale per group of a row
            # Files written before rows were flattened keep one scale axis per tensor axis.
            rows = v.reshape(v.shape[0], -1) if scale.dim() < v.dim() else v
            groups = scale.shape[-1]
            w = rows.float().reshape(*rows.shape[:-1], groups, rows.shape[-1] // groups)
            out[k] = (w * scale.float()[..., None]).reshape(v.shape)
        else:
            out[k] = v.float() if v.is_floating_point() else v
    return out


@dataclass
class Checkpoint:
    """The contents of a checkpoint folder.

    Attributes:
        config: the model config as a plain dict.
        state_dict: model weights (CPU tensors).
        meta: provenance dict (empty if none was saved).
        optimizer: optimizer state dict, or ``None``.
        train_state: step / RNG states, or ``None``.
        path: the folder it was read from.
    """

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    train_state: dict[str, Any] | None = None
    path: Path | None = None


def _config_dict(config: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"config must be a dataclass instance or a dict, got {type(config).__name__}")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DDP / ``torch.compile`` wrappers, so keys carry no prefix."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | os.PathLike[str],
    config: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    model_type: str | None = None,
) -> Path:
    """Write a checkpoint folder atomically.

    Args:
        path: destination folder (replaced if it exists).
        config: model config (dataclass instance or dict; must be JSON-serialisable).
        model: the model (DDP / compiled wrappers are unwrapped).
        optimizer: optional optimizer whose state is saved for resumption.
        train_state: optional dict of plain Python values and tensors (step, RNG states).
        meta: optional JSON-serialisable provenance.
        model_type: the ``"type"`` written first in ``config.json``; defaults to the model's
            ``MODEL_TYPE`` class attribute.

    Returns:
        The final folder path.

    Raises:
        ValueError: no model type (neither ``model_type`` nor ``MODEL_TYPE``), or ``config``
            already names another one.
    """
    bare = _unwrap(model)
    model_type = model_type or getattr(bare, "MODEL_TYPE", None)
    if not model_type:
        raise ValueError(
            f"{type(bare).__name__} has no model type: give the class a MODEL_TYPE attribute or "
            f"pass save_checkpoint(..., model_type=...)"
        )
    body = _config_dict(config)
    named = body.pop(TYPE_KEY, model_type)
    if named != model_type:
        raise ValueError(f"config names type {named!r} but the model is {model_type!r}")
    with atomic_folder(path) as tmp:
        save_json({TYPE_KEY: model_type, **body}, tmp / CONFIG)
        # safetensors refuses shared / non-contiguous storage; clone to be safe.
        weights = {k: v.detach().cpu().contiguous().clone() for k, v in bare.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS))
        save_json(meta or {}, tmp / META)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
    return Path(path)


def _backup(path: Path) -> Path | None:
    """The newest ``<name>.old-*`` folder left by a crash mid-replace, if any."""
    olds = sorted(path.parent.glob(f"{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    return olds[-1] if olds else None


def has_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (or a crash backup of it) holds a checkpoint to resume from."""
    path = Path(path)
    return (path / WEIGHTS).exists() or _backup(path) is not None


def _corrupt(path: Path, what: str, err: Exception | None = None) -> CorruptFileError:
    why = f" ({err})" if err is not None else ""
    return CorruptFileError(
        f"checkpoint {path} is incomplete or corrupt: {what}{why}. A checkpoint folder needs "
        f"{CONFIG} and {WEIGHTS}; delete the folder and re-run training, or point to another "
        f"checkpoint"
    )


def _resolve(path: Path) -> Path:
    """``path``, or its crash backup if only that exists; raises if neither is a folder."""
    if not path.exists():
        backup = _backup(path)
        if backup is None:
            raise MissingWeightsError(
                f"no checkpoint at {path}; train one first (e.g. `rla-gym train-rla`) or fix "
                f"the path"
            )
        path = backup
    if not path.is_dir():
        raise _corrupt(path, "expected a folder, found a file")
    return path


def _read_config(folder: Path) -> dict[str, Any]:
    if not (folder / CONFIG).exists():
        raise _corrupt(folder, f"{CONFIG} is missing")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as err:
        raise _corrupt(folder, f"{CONFIG} is not valid JSON", err) from err
    if not isinstance(config, dict):
        raise _corrupt(folder, f"{CONFIG} does not hold a JSON object")
    return config


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the ``config.json`` of a checkpoint folder (or of its crash backup).

    Raises:
        MissingWeightsError: ``path`` does not exist.
        CorruptFileError: ``path`` is a file, or its ``config.json`` is missing or unreadable.
    """
    return _read_config(_resolve(Path(path)))


def config_type(config: dict[str, Any]) -> str | None:
    """The model type a ``config.json`` names, or ``None`` if it names none.

    Reads :data:`TYPE_KEY`, else the keys that named the type before it (``"model"`` of world
    models and the progress head, the versioned ``"format"`` of policies and PPO).
    """
    if TYPE_KEY in config:
        return config[TYPE_KEY]
    if isinstance(config.get(_LEGACY_TYPE_KEY), str):
        return config[_LEGACY_TYPE_KEY]
    fmt = config.get("format")
    return _LEGACY_FORMATS.get(fmt) if isinstance(fmt, str) else None


def model_config(
    config: dict[str, Any],
    expected: str | tuple[str, ...],
    path: str | os.PathLike[str],
    untyped: bool = False,
) -> dict[str, Any]:
    """``config`` without its type key, once it is known to describe an ``expected`` model.

    Args:
        config: a checkpoint's ``config.json``.
        expected: the type (or types) the calling loader reads.
        path: the checkpoint folder, for the error message.
        untyped: accept a config that names no type (the model's checkpoints predate
            :data:`TYPE_KEY` and named none).

    Raises:
        ModelTypeError: ``config`` names another type, or none when ``untyped`` is false.
    """
    expected = (expected,) if isinstance(expected, str) else expected
    stored = config_type(config)
    if stored not in expected and not (stored is None and untyped):
        want = " or ".join(repr(t) for t in expected)
        if stored is None:
            raise ModelTypeError(
                f"{path}/{CONFIG} names no model type, so it is no {want} checkpoint (those "
                f"always name theirs); point to a {want} checkpoint folder"
            )
        raise ModelTypeError(
            f"{path} holds a {stored!r} checkpoint, not {want}; `rla_gym.load_model(path)` "
            f"loads any checkpoint with the loader its {TYPE_KEY!r} names"
        )
    return {k: v for k, v in config.items() if not _names_type(k, v)}


def _names_type(key: str, value: Any) -> bool:
    """Whether ``key: value`` of a ``config.json`` is a type key (current or legacy)."""
    if key == TYPE_KEY:
        return True
    return isinstance(value, str) and (
        key == _LEGACY_TYPE_KEY or (key == "format" and value in _LEGACY_FORMATS)
    )


def typed_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` naming its type under :data:`TYPE_KEY` (first), whatever key named it before;
    a config that names no type is returned as it is."""
    stored = config_type(config)
    if stored is None:
        return config
    return {TYPE_KEY: stored, **{k: v for k, v in config.items() if not _names_type(k, v)}}


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint`.

    Args:
        path: the folder.
        map_location: device for the weights and optimizer state.

    Returns:
        A :class:`Checkpoint`; its ``config`` is ``config.json`` as stored, type key included.

    Raises:
        MissingWeightsError: ``path`` does not exist.
        CorruptFileError: a required file is missing, truncated or unreadable.
    """
    path = _resolve(Path(path))
    config = _read_config(path)
    if not (path / WEIGHTS).exists():
        raise _corrupt(path, f"{WEIGHTS} is missing")
    try:
        state_dict = dequantize_state_dict(load_file(str(path / WEIGHTS), device=str(map_location)))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _corrupt(path, f"{WEIGHTS} cannot be read", err) from err
    meta: dict[str, Any] = {}
    if (path / META).exists():
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, ValueError) as err:
            raise _corrupt(path, f"{META} is not valid JSON", err) from err
    optimizer = train_state = None
    try:
        if (path / OPTIMIZER).exists():
            optimizer = torch.load(path / OPTIMIZER, map_location=map_location, weights_only=True)
        if (path / TRAIN_STATE).exists():
            train_state = torch.load(path / TRAIN_STATE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise _corrupt(path, "the optimizer or training state cannot be read", err) from err
    return Checkpoint(config, state_dict, meta, optimizer, train_state, path)


def load_sb3_model(path: str | Path, device: str = "cpu") -> Any:
    """Load a Stable-Baselines3 model ``.zip`` whatever its algorithm.

    The algorithm is read from the module of the stored policy class (``sac.policies`` means SAC,
    ``td3.policies`` TD3, the shared actor-critic policies PPO).

    Raises:
        MissingExtraError: stable-baselines3 is not installed.
        CorruptFileError: the file is not an SB3 model archive.
    """
    from rla_gym.errors import MissingExtraError

    try:
        import stable_baselines3 as sb3
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingExtraError("stable-baselines3", "sb3", "to load SB3 models") from e
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise CorruptFileError(
            f"{path} is not a Stable-Baselines3 model archive ({err}); save models with "
            f"model.save(path)"
        ) from err
    module = str(data.get("policy_class", {}).get("__module__", ""))
    algo = next((a for a in ("SAC", "TD3") if f".{a.lower()}." in module), "PPO")
    return getattr(sb3, algo).load(path, device=device)
