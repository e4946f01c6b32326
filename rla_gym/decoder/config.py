"""Configuration of the feature-to-pixel frame decoder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["DecoderConfig"]


@dataclass(frozen=True, kw_only=True)
class DecoderConfig:
    """Sizes and options of :class:`rla_gym.decoder.FrameDecoder`.

    The decoder maps a grid of ``gh x gw`` patch features to a ``resolution`` px RGB frame through
    ``log2(resolution / gh)`` upsampling stages, so ``resolution / gh`` must be a power of two and
    ``gh / gw == 1`` (square frames). The last stage is a sub-pixel (pixel-shuffle) step, which
    keeps every 3x3 convolution at half the output resolution or less: on a CPU the full-resolution
    convolutions would cost more than the whole rest of the network.

    The defaults fit the package's reference data (8x8 x 512 opennsfw res4 features of 128 px
    frames): 0.75 M parameters, ~0.8 MB as int8 in a bundle. Most of the compute sits in the
    32 and 64 px stages, which is why they are narrow.
    """

    feature_dim: int = 512
    """``D``: channels per feature token (set from the data by ``train_decoder``)."""
    grid: tuple[int, int] = (8, 8)
    """``(gh, gw)`` token grid the features come on (set from the data by ``train_decoder``)."""
    resolution: int = 128
    """Side of the decoded square frame in pixels (set from the dataset by ``train_decoder``)."""
    encoder_fingerprint: str = ""
    """Fingerprint of the encoder whose features the decoder was trained on."""
    width: int = 192
    """Channels after the 1x1 input projection and of the first 3x3 block at grid resolution."""
    channels: tuple[int, ...] = (128, 64, 32)
    """Channels after each nearest-upsampling + 3x3 conv stage; the final 2x comes from a
    pixel shuffle. Needs ``len(channels) + 1 == log2(resolution / gh)``."""
    groups: int = 8
    """GroupNorm groups (must divide ``width`` and every entry of ``channels``)."""
    l1_weight: float = 1.0
    """Weight of the per-pixel L1 loss."""
    gradient_weight: float = 0.1
    """Weight of an L1 loss on horizontal and vertical image gradients (sharper edges); 0: off."""
    foreground_weight: float = 4.0
    """Extra pixel-L1 weight on the foreground: pixels that differ from the training frames'
    median (the static background) by more than ``foreground_threshold``. Thin moving parts (a
    reacher arm, a gripper) cover a few per cent of the frame; without it the decoder learns the
    background and blurs them away at little cost in L1 or PSNR. 0: plain L1."""
    foreground_threshold: float = 0.1
    """Mean absolute RGB difference (in ``[0, 1]``) from the median frame that marks foreground."""

    def __post_init__(self) -> None:
        gh, gw = self.grid
        if self.feature_dim < 1 or gh < 1 or gw < 1 or self.resolution < 1 or self.width < 1:
            raise ValueError(
                f"DecoderConfig needs positive sizes, got feature_dim={self.feature_dim}, "
                f"grid={self.grid}, resolution={self.resolution}, width={self.width}"
            )
        if gh != gw:
            raise ValueError(f"DecoderConfig decodes square frames; got a {gh}x{gw} grid")
        ratio = self.resolution // gh
        if self.resolution % gh or ratio & (ratio - 1) or ratio < 2:
            raise ValueError(
                f"resolution / grid must be a power of two >= 2; got {self.resolution} px for a "
                f"{gh}x{gw} grid"
            )
        if len(self.channels) + 1 != self.num_upsamplings:
            raise ValueError(
                f"a {gh}x{gw} grid needs {self.num_upsamplings} upsamplings to reach "
                f"{self.resolution} px, i.e. {self.num_upsamplings - 1} entries in channels "
                f"(the last 2x is a pixel shuffle); got channels={self.channels}"
            )
        for c in (self.width, *self.channels):
            if c < 1 or c % self.groups:
                raise ValueError(f"groups={self.groups} must divide every width; got {c}")
        if min(self.l1_weight, self.gradient_weight, self.foreground_weight) < 0:
            raise ValueError("DecoderConfig loss weights must be >= 0")

    @property
    def num_tokens(self) -> int:
        """``N = gh * gw``."""
        return self.grid[0] * self.grid[1]

    @property
    def num_upsamplings(self) -> int:
        """Number of 2x steps from the grid to the frame."""
        return (self.resolution // self.grid[0]).bit_length() - 1

    @classmethod
    def for_grid(cls, grid: tuple[int, int], resolution: int, **overrides: Any) -> DecoderConfig:
        """A config for ``grid`` and ``resolution``, other fields from ``overrides``.

        ``channels`` (given or default) is kept when it has the right number of stages for the
        grid; otherwise its last entries are kept, or its last width is halved for extra stages
        (e.g. a 4x4 grid to 128 px needs one stage more than 8x8).
        """
        ratio = resolution // max(grid[0], 1)
        stages = max(ratio.bit_length() - 2, 0)  # one 2x is the pixel shuffle
        base = list(overrides.pop("channels", cls.channels))
        while len(base) < stages:
            base.append(max(base[-1] // 2, 8))
        return cls(
            grid=(int(grid[0]), int(grid[1])),
            resolution=int(resolution),
            channels=tuple(base[len(base) - stages :]),
            **overrides,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``config.json`` (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["grid"], d["channels"] = list(self.grid), list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecoderConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys (a checkpoint of another model type or a newer version).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"config has keys DecoderConfig does not know: {unknown}; is this a frame-decoder "
                f"checkpoint made by a compatible rla-gym version?"
            )
        data = dict(data)
        for key in ("grid", "channels"):
            if key in data:
                data[key] = tuple(int(v) for v in data[key])
        return cls(**data)
