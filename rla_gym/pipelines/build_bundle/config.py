"""The options of ``rla-gym build-bundle``: one frozen dataclass, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["BuildBundleConfig"]


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
