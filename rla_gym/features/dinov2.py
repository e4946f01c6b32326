"""DINOv2 ViT-S/14 and ViT-B/14 patch features via ``transformers.Dinov2Model``.

No DINOv2 weights can be installed offline (see ``/work/shared/reference/dino-weights.md``), so this
encoder must be handed weights explicitly and refuses to run without them: it never falls back to
random weights. :meth:`Dinov2Encoder.random_init` builds a random model on purpose, for tests and
speed measurements, and its fingerprint says ``random`` so its features can never pass for DINO's.

Accepted weights:

* a Hugging Face directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``);
* a Meta release checkpoint ``dinov2_vit{s,b}14_pretrain.pth`` (checked against Meta's sha256 when
  the file keeps its release name, or against ``expected_sha256``); Meta keys are converted here;
* a hub id such as ``facebook/dinov2-small``, which works only when it is in the local Hugging Face
  cache or the hub is reachable.

Frame sizes must be multiples of the 14 px patch: 112 (8x8 tokens), 126 (9x9) or 224 (16x16). The
project's 128 px frames are *not* accepted; collect at 112/126/224 px instead, because resizing
inside the encoder would silently change what a "pixel" means to the rest of the pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rla_gym.errors import CorruptFileError, MissingExtraError, MissingWeightsError
from rla_gym.features.base import FeatureEncoder, sha256_file

__all__ = [
    "DINOV2_VARIANTS",
    "META_CHECKPOINTS",
    "WEIGHTS_ENV_VAR",
    "Dinov2Encoder",
    "hf_to_meta_state_dict",
    "meta_to_hf_state_dict",
]

log = logging.getLogger(__name__)

WEIGHTS_ENV_VAR = "RLA_GYM_DINOV2_WEIGHTS"

# Architecture of Meta's released backbones (all: patch 14, 518 px pretraining grid 37x37, MLP x4,
# LayerScale, LayerNorm eps 1e-6, no registers).
DINOV2_VARIANTS: dict[str, dict[str, int]] = {
    "vits14": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "vitb14": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
}

# Meta release file name -> (variant, sha256 from public LFS pointers of mirrors of the release).
META_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "dinov2_vits14_pretrain.pth": (
        "vits14",
        "b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9",
    ),
    "dinov2_vitb14_pretrain.pth": (
        "vitb14",
        "0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73",
    ),
    # Register variants need Dinov2WithRegistersModel; listed so the error names the problem.
    "dinov2_vitb14_reg4_pretrain.pth": (
        "vitb14_reg4",
        "73182a088cf94833c94b1666d1c99e02fe87e2007bff57b564fb6206e25dba71",
    ),
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Friendly aliases accepted by random_init overrides.
_CONFIG_ALIASES = {
    "num_layers": "num_hidden_layers",
    "depth": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "dim": "hidden_size",
}


def _import_torch_transformers() -> tuple[Any, Any]:
    """Import torch and transformers or raise :class:`MissingExtraError` naming the extra."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtraError(
            exc.name or "transformers", "dinov2", "for the DINOv2 encoders"
        ) from exc
    return torch, transformers


def _canonical_variant(variant: str) -> str:
    v = variant.removeprefix("dinov2-").removeprefix("dinov2_")
    if v not in DINOV2_VARIANTS:
        raise ValueError(
            f"unknown DINOv2 variant {variant!r}; choose one of {sorted(DINOV2_VARIANTS)}"
        )
    return v


def _make_config(variant: str, **overrides: Any) -> Any:
    """``Dinov2Config`` of a released variant, optionally shrunk (tests) via ``overrides``."""
    _, transformers = _import_torch_transformers()
    fields: dict[str, Any] = dict(
        DINOV2_VARIANTS[variant],
        patch_size=14,
        image_size=518,
        mlp_ratio=4,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        use_swiglu_ffn=False,
        qkv_bias=True,
    )
    for key, value in overrides.items():
        fields[_CONFIG_ALIASES.get(key, key)] = value
    return transformers.Dinov2Config(**fields)


def _attention_names(hf_keys: set[str]) -> tuple[str, str, str, str]:
    """Suffixes of q, k, v and output projections in this transformers version's Dinov2Model.

    transformers 5 renamed ``attention.attention.{query,key,value}`` / ``attention.output.dense``
    to ``attention.{q,k,v,o}_proj``; we follow whichever the installed model uses.
    """
    if "encoder.layer.0.attention.q_proj.weight" in hf_keys:
        return ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj")
    return (
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
        "attention.output.dense",
    )


def _block_renames(q: str, k: str, v: str, o: str) -> dict[str, str]:
    """Meta block sub-key -> HF layer sub-key, for everything except the fused qkv."""
    del q, k, v
    return {
        "norm1.weight": "norm1.weight",
        "norm1.bias": "norm1.bias",
        "attn.proj.weight": f"{o}.weight",
        "attn.proj.bias": f"{o}.bias",
        "ls1.gamma": "layer_scale1.lambda1",
        "norm2.weight": "norm2.weight",
        "norm2.bias": "norm2.bias",
        "mlp.fc1.weight": "mlp.fc1.weight",
        "mlp.fc1.bias": "mlp.fc1.bias",
        "mlp.fc2.weight": "mlp.fc2.weight",
        "mlp.fc2.bias": "mlp.fc2.bias",
        "ls2.gamma": "layer_scale2.lambda1",
    }


_TOP_LEVEL = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}


def meta_to_hf_state_dict(meta: Mapping[str, Any], hf_keys: set[str]) -> dict[str, Any]:
    """Rename a Meta DINOv2 state dict to ``transformers.Dinov2Model`` names.

    Args:
        meta: Meta/timm-style keys (``blocks.{i}.attn.qkv.weight`` of shape ``(3D, D)``, ...).
        hf_keys: the target model's ``state_dict()`` keys (selects the attention naming).

    Returns:
        HF-named tensors; the fused ``qkv`` is split into q, k, v in that order (Meta's layout).

    Raises:
        CorruptFileError: a key is not part of a register-free DINOv2 backbone.
    """
    q, k, v, o = _attention_names(hf_keys)
    renames = _block_renames(q, k, v, o)
    out: dict[str, Any] = {}
    for key, tensor in meta.items():
        if key in _TOP_LEVEL:
            out[_TOP_LEVEL[key]] = tensor
            continue
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
            prefix, sub = f"encoder.layer.{parts[1]}.", parts[2]
            if sub in ("attn.qkv.weight", "attn.qkv.bias"):
                kind = sub.rsplit(".", 1)[1]
                for name, chunk in zip((q, k, v), tensor.chunk(3, dim=0), strict=True):
                    out[f"{prefix}{name}.{kind}"] = chunk.contiguous()
                continue
            if sub in renames:
                out[prefix + renames[sub]] = tensor
                continue
        hint = " (register variants are not supported)" if key == "register_tokens" else ""
        raise CorruptFileError(f"unexpected key {key!r} in a DINOv2 checkpoint{hint}")
    return out


def hf_to_meta_state_dict(hf: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`meta_to_hf_state_dict`: ``Dinov2Model`` names -> Meta release names."""
    import torch

    q, k, v, o = _attention_names(set(hf))
    inverse_block = {hf_sub: meta_sub for meta_sub, hf_sub in _block_renames(q, k, v, o).items()}
    inverse_top = {hf_key: meta_key for meta_key, hf_key in _TOP_LEVEL.items()}
    out: dict[str, Any] = {}
    for key, tensor in hf.items():
        if key in inverse_top:
            out[inverse_top[key]] = tensor
            continue
        parts = key.split(".", 3)  # encoder, layer, i, rest
        i, sub = parts[2], parts[3]
        if sub in inverse_block:
            out[f"blocks.{i}.{inverse_block[sub]}"] = tensor
        elif sub.startswith(q + "."):
            kind = sub.rsplit(".", 1)[1]
            prefix = f"encoder.layer.{i}."
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
                [hf[f"{prefix}{name}.{kind}"] for name in (q, k, v)], dim=0
            )
        elif not (sub.startswith(k + ".") or sub.startswith(v + ".")):
            raise ValueError(f"cannot map Dinov2Model key {key!r} to Meta names")
    return out


def _state_dict_sha256(model: Any) -> str:
    """sha256 over names, shapes and fp32 values of a model's parameters (order-independent)."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(f"{key}:{tuple(tensor.shape)};".encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _looks_like_hub_id(text: str) -> bool:
    """``"org/name"`` with no filesystem-looking parts."""
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not text.startswith((".", "~"))
        and not text.endswith((".pth", ".pt", ".bin", ".safetensors"))
    )


class Dinov2Encoder(FeatureEncoder):
    """DINOv2 ViT patch tokens after the final LayerNorm (CLS dropped), raster order.

    Frames ``uint8 (B, H, W, 3)`` RGB with ``H, W`` multiples of 14 (112, 126, 224 px) map to
    ``float32 (B, N, D)``, ``N = (H/14) * (W/14)``, ``D`` = 384 (vits14) or 768 (vitb14).
    Preprocessing: ``/255``, ImageNet mean/std, no resize; position embeddings are interpolated from
    the 37x37 pretraining grid by ``transformers``.

    Args:
        variant: ``"vits14"`` or ``"vitb14"``.
        weights: HF directory, Meta ``.pth`` file or hub id; ``None`` reads
            ``$RLA_GYM_DINOV2_WEIGHTS``.
        expected_sha256: if given, the weights file must have this sha256.
        device: torch device for the model and inputs.
        dtype: parameter dtype; ``torch.bfloat16`` is ~2x faster on CPUs with bf16 support and
            changes features slightly, so it is part of the fingerprint.
        batch_size: frames per forward pass inside :meth:`encode`.
        local_files_only: for hub ids: ``True`` never touches the network; ``None`` (default) tries
            the local cache first, then the hub unless ``HF_HUB_OFFLINE`` is set.

    Raises:
        MissingWeightsError: no weights given, or they cannot be found or fetched.
        CorruptFileError: checksum mismatch or a state dict that does not fit the variant.
        MissingExtraError: torch/transformers not installed.
    """

    stride = 14

    def __init__(
        self,
        variant: str = "vits14",
        weights: str | Path | None = None,
        expected_sha256: str | None = None,
        device: str = "cpu",
        dtype: Any = None,
        batch_size: int = 32,
        local_files_only: bool | None = None,
    ) -> None:
        torch, _ = _import_torch_transformers()
        variant = _canonical_variant(variant)
        if weights is None:
            weights = os.environ.get(WEIGHTS_ENV_VAR) or None
        if weights is None:
            raise MissingWeightsError(
                f"Dinov2Encoder({variant!r}) needs pretrained weights and never uses random ones. "
                f"Pass weights=<path or hub id> or set {WEIGHTS_ENV_VAR}. Accepted: a Meta "
                f"checkpoint "
                f"file (e.g. dinov2_{variant}_pretrain.pth), a Hugging Face directory with "
                f"config.json + model.safetensors, or a hub id such as "
                f"'facebook/dinov2-{'small' if variant == 'vits14' else 'base'}' (needs the local "
                f"HF cache or hub access). Model hubs are unreachable here; the offline default is "
                f"make_encoder('opennsfw-resnet50-res4')."
            )
        model, sha = self._load(variant, weights, expected_sha256, local_files_only)
        self._setup(
            variant, model, sha, device, dtype or torch.float32, batch_size, random_seed=None
        )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def random_init(
        cls,
        variant: str = "vits14",
        seed: int = 0,
        device: str = "cpu",
        dtype: Any = None,
        batch_size: int = 32,
        **config_overrides: Any,
    ) -> Dinov2Encoder:
        """A randomly initialised model of the variant's architecture: tests and speed only.

        Args:
            variant: ``"vits14"`` or ``"vitb14"``.
            seed: initialisation seed (the global torch RNG is left untouched).
            config_overrides: ``Dinov2Config`` fields to shrink the model for fast tests, e.g.
                ``num_layers=2`` (aliases: ``num_layers``/``depth``, ``num_heads``, ``dim``).

        Returns:
            An encoder whose fingerprint reads ``dinov2-<variant>@random-s<seed>-<hash>``.
        """
        torch, transformers = _import_torch_transformers()
        variant = _canonical_variant(variant)
        config = _make_config(variant, **config_overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = transformers.Dinov2Model(config)
        self = cls.__new__(cls)
        self._setup(
            variant,
            model,
            _state_dict_sha256(model),
            device,
            dtype or torch.float32,
            batch_size,
            random_seed=int(seed),
        )
        return self

    def _setup(
        self,
        variant: str,
        model: Any,
        sha: str,
        device: str,
        dtype: Any,
        batch_size: int,
        random_seed: int | None,
    ) -> None:
        import torch

        self.variant = variant
        self.name = f"dinov2-{variant}"
        self.feature_dim = int(model.config.hidden_size)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dtype = dtype
        self.random_seed = random_seed
        self._sha256 = sha
        self._model = model.to(device=self.device, dtype=dtype).eval()
        self._model.requires_grad_(False)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(_IMAGENET_MEAN, device=self.device).view(shape)
        self._std = torch.tensor(_IMAGENET_STD, device=self.device).view(shape)

    @staticmethod
    def _load(
        variant: str,
        weights: str | Path,
        expected_sha256: str | None,
        local_files_only: bool | None,
    ) -> tuple[Any, str]:
        """Build the model from weights; returns ``(model, sha256 of the weights file)``."""
        path = Path(weights).expanduser()
        if path.is_dir():
            return Dinov2Encoder._load_hf_dir(variant, path, expected_sha256)
        if path.is_file():
            return Dinov2Encoder._load_meta_file(variant, path, expected_sha256)
        text = str(weights)
        if _looks_like_hub_id(text):
            return Dinov2Encoder._load_hub(variant, text, expected_sha256, local_files_only)
        raise MissingWeightsError(
            f"DINOv2 weights {text!r} not found: not an existing file or directory, nor a hub id "
            f"'org/name'. Give the path of dinov2_{variant}_pretrain.pth or of a Hugging Face "
            f"model directory."
        )

    @staticmethod
    def _check_sha(path: Path, sha: str, expected: str | None) -> None:
        if expected is not None and sha != expected.lower():
            raise CorruptFileError(
                f"{path} has sha256 {sha} but {expected} was expected; the file is corrupt, "
                f"truncated or a different model"
            )

    @staticmethod
    def _load_meta_file(variant: str, path: Path, expected_sha256: str | None) -> tuple[Any, str]:
        torch, transformers = _import_torch_transformers()
        sha = sha256_file(path)
        Dinov2Encoder._check_sha(path, sha, expected_sha256)
        known = META_CHECKPOINTS.get(path.name)
        if known is not None:
            known_variant, known_sha = known
            if known_variant != variant:
                raise CorruptFileError(
                    f"{path.name} is a {known_variant} checkpoint but variant {variant!r} "
                    "was asked for"
                )
            Dinov2Encoder._check_sha(path, sha, known_sha)
        elif expected_sha256 is None:
            log.warning("loading %s without a checksum to verify (pass expected_sha256=...)", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CorruptFileError(f"cannot read {path} as a torch checkpoint: {exc}") from exc
        state = Dinov2Encoder._unwrap_checkpoint(state, path)
        model = transformers.Dinov2Model(_make_config(variant))
        target = model.state_dict()
        converted = meta_to_hf_state_dict(state, set(target))
        # mask_token is only used for masked training; some exports drop it.
        missing = sorted(set(target) - set(converted) - {"embeddings.mask_token"})
        unexpected = sorted(set(converted) - set(target))
        bad_shapes = [
            f"{k}: file {tuple(t.shape)} vs model {tuple(target[k].shape)}"
            for k, t in converted.items()
            if k in target and t.shape != target[k].shape
        ]
        if missing or unexpected or bad_shapes:
            raise CorruptFileError(
                f"{path} does not fit DINOv2 {variant}: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}, shape mismatches {bad_shapes[:5]}"
            )
        model.load_state_dict(converted, strict=False)
        return model, sha

    @staticmethod
    def _unwrap_checkpoint(state: Any, path: Path) -> dict[str, Any]:
        """Accept a bare state dict or a training checkpoint holding one (``teacher``/``model``)."""
        if not isinstance(state, Mapping):
            raise CorruptFileError(f"{path} holds a {type(state).__name__}, not a state dict")
        for key in ("teacher", "model", "state_dict"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
        # Training checkpoints prefix the backbone; release files do not.
        return {
            k.removeprefix("backbone."): v
            for k, v in state.items()
            if not k.startswith(("dino_head.", "ibot_head."))
        }

    @staticmethod
    def _load_hf_dir(variant: str, path: Path, expected_sha256: str | None) -> tuple[Any, str]:
        _, transformers = _import_torch_transformers()
        files = [path / f for f in _HF_WEIGHT_FILES if (path / f).is_file()]
        if not (path / "config.json").is_file() or not files:
            raise MissingWeightsError(
                f"{path} is not a Hugging Face model directory: it needs config.json and one of "
                f"{', '.join(_HF_WEIGHT_FILES)}"
            )
        sha = sha256_file(files[0])
        Dinov2Encoder._check_sha(files[0], sha, expected_sha256)
        try:
            model = transformers.Dinov2Model.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot load a Dinov2Model from {path}: {exc}") from exc
        want = DINOV2_VARIANTS[variant]
        got = {k: getattr(model.config, k) for k in want}
        if got != want:
            raise CorruptFileError(f"{path} holds a DINOv2 with {got}, not {variant} ({want})")
        return model, sha

    @staticmethod
    def _load_hub(
        variant: str, repo_id: str, expected_sha256: str | None, local_files_only: bool | None
    ) -> tuple[Any, str]:
        try:
            from huggingface_hub import snapshot_download
        except ImportError as exc:
            raise MissingExtraError("huggingface_hub", "dinov2", "to load hub ids") from exc
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        attempts = [True] if (local_files_only or offline) else [True, False]
        errors: list[str] = []
        for local_only in attempts:
            try:
                directory = snapshot_download(
                    repo_id,
                    local_files_only=local_only,
                    allow_patterns=["config.json", *_HF_WEIGHT_FILES],
                )
            except Exception as exc:  # hub errors have many types; all mean "not available"
                errors.append(f"{'cache' if local_only else 'hub'}: {type(exc).__name__}: {exc}")
                continue
            return Dinov2Encoder._load_hf_dir(variant, Path(directory), expected_sha256)
        raise MissingWeightsError(
            f"could not get DINOv2 weights {repo_id!r} from the local Hugging Face cache or the "
            f"hub "
            f"({'; '.join(errors)[:500]}). Download them where the hub is reachable and pass the "
            f"directory or the Meta .pth file as weights=..."
        )

    # ------------------------------------------------------------------ encoder interface
    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights file (Meta ``.pth`` or HF weights); random_init: of the tensors."""
        return self._sha256

    @property
    def fingerprint(self) -> str:
        """``name@<12 hex>``, ``name@random-s<seed>-<8 hex>`` for random weights, ``+bf16`` etc."""
        import torch

        if self.random_seed is not None:
            fp = f"{self.name}@random-s{self.random_seed}-{self._sha256[:8]}"
        else:
            fp = super().fingerprint
        if self.dtype != torch.float32:
            fp += "+" + str(self.dtype).removeprefix("torch.").replace("bfloat16", "bf16")
        return fp

    def _encode_batch(self, frames: np.ndarray) -> np.ndarray:
        """``uint8 (b, H, W, 3)`` -> ``float32 (b, H/14 * W/14, D)`` patch tokens."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = ((x - self._mean) / self._std).to(self.dtype)
            hidden = self._model(pixel_values=x).last_hidden_state  # (b, 1 + N, D), CLS first
            return hidden[:, 1:].float().cpu().numpy()
