"""Configuration of the RLA (residual latent action) autoencoder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["RLAConfig"]


@dataclass(frozen=True, kw_only=True)
class RLAConfig:
    """Sizes and options of :class:`rla_gym.rla.RLAAutoencoder`.

    The defaults are the CPU preset for the package's reference data: 8x8 = 64 tokens of 512-dim
    ResNet res4 features (128 px frames). It has 1.4M parameters and ``|z| = 8 x 16 = 128``
    numbers (between the paper's 64 and 2048). Measured cost at batch 32: 0.72 CPU-seconds per
    AdamW step, i.e. ~2.5 steps/s on two free cores, so the default 3000-step run of
    ``TrainRLAConfig`` takes ~20 min (0.4 steps/s were measured on a heavily shared machine).
    :meth:`paper_scale` gives the paper's GPU-sized network.
    """

    feature_dim: int = 512
    """``D``: channels per feature token (set from the data by ``train_rla``)."""
    num_tokens: int = 64
    """``N``: feature tokens per frame, ``gh * gw`` (set from the data by ``train_rla``)."""
    latent_tokens: int = 8
    """``K``: number of latent-action tokens (paper: 32; 8 in its 64-number ablation)."""
    latent_dim: int = 16
    """``d``: channels per latent token; ``|z| = K * d`` (paper: 64)."""
    width: int = 128
    """Transformer width of encoder and decoder (paper: 1024)."""
    depth: int = 3
    """Transformer blocks in each of encoder and decoder (paper: 12)."""
    heads: int = 4
    """Attention heads; must divide ``width`` (paper: 16)."""
    mlp_ratio: float = 4.0
    """Hidden size of the block MLP as a multiple of ``width``."""
    dropout: float = 0.0
    """Dropout inside the transformer blocks (paper: none)."""
    positional_embedding: bool = True
    """Add a learned embedding per feature token (paper: none; see the model docstring)."""
    decoder_target: Literal["absolute", "residual"] = "absolute"
    """``"absolute"``: the head output is ``ŝ_{t+h}`` (paper); ``"residual"``: ``s_t + head``."""
    l1_weight: float = 1.0
    """Weight of the L1 reconstruction term (paper: 1)."""
    mse_weight: float = 1.0
    """Weight of the MSE reconstruction term (paper: 1)."""
    change_weight: float = 0.0
    """Extra weight of the tokens that change between ``s_t`` and ``s_{t+h}`` (0: the paper's
    uniform loss). Action effects move a few patches while the static scene dominates a uniform
    loss; see :func:`~rla_gym.rla.model.reconstruction_loss`."""
    linear_rank: int = 0
    """Rank ``r`` of a linear path beside the transformers (0: none, the paper's RLA). The
    residual is projected onto ``r`` directions of the flattened ``N * D`` feature space, mapped
    into ``z``, and decoded back along the same directions. ``train_rla`` initialises the
    directions to the top principal components of the training residuals, so training starts
    from the best rank-``r`` linear autoencoder (on Lift a 128-number PCA code keeps 0.70 of the
    direction of real counterfactual differences, where the transformer RLA alone kept 0.36:
    ``benchmarks/faithfulness_levers.py``).
    Costs ``r * N * D`` parameters; needs ``decoder_target="residual"`` and ``r <= K * d``."""
    min_gap: int = 1
    """Smallest frame gap ``h`` seen in training (metadata for samplers and the world model)."""
    max_gap: int = 32
    """Largest frame gap ``h`` seen in training (paper: 99 for ManiSkill at 20 Hz)."""
    encoder_fingerprint: str = ""
    """Fingerprint of the feature encoder whose features this autoencoder was trained on."""

    def __post_init__(self) -> None:
        positive = (
            "feature_dim",
            "num_tokens",
            "latent_tokens",
            "latent_dim",
            "width",
            "depth",
            "heads",
            "min_gap",
            "max_gap",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"RLAConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(
                f"RLAConfig.width={self.width} must be divisible by heads={self.heads}"
            )
        if self.min_gap > self.max_gap:
            raise ValueError(f"RLAConfig.min_gap={self.min_gap} exceeds max_gap={self.max_gap}")
        if self.decoder_target not in ("absolute", "residual"):
            raise ValueError(
                f"RLAConfig.decoder_target must be 'absolute' or 'residual', "
                f"got {self.decoder_target!r}"
            )
        if self.change_weight < 0:
            raise ValueError(f"RLAConfig.change_weight must be >= 0, got {self.change_weight}")
        if self.linear_rank < 0 or self.linear_rank > self.latent_size:
            raise ValueError(
                f"RLAConfig.linear_rank must be in [0, latent_tokens * latent_dim = "
                f"{self.latent_size}], got {self.linear_rank}"
            )
        if self.linear_rank and self.decoder_target != "residual":
            raise ValueError(
                "RLAConfig.linear_rank > 0 adds a linear residual to the output and needs "
                f"decoder_target='residual', got {self.decoder_target!r}"
            )
        if self.mlp_ratio <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("RLAConfig needs mlp_ratio > 0 and 0 <= dropout < 1")

    @property
    def latent_size(self) -> int:
        """``K * d``: numbers per latent action."""
        return self.latent_tokens * self.latent_dim

    @classmethod
    def paper_scale(
        cls, feature_dim: int = 1024, num_tokens: int = 1024, **overrides: Any
    ) -> RLAConfig:
        """The paper's 32x64 autoencoder (GPU scale, ~300M parameters at ``D = 1024``).

        Width 1024, 12 blocks, 16 heads, ``K = 32`` latent tokens of ``d = 64``, gaps 1..99, no
        positional embedding (DINO tokens carry their position).
        """
        base: dict[str, Any] = dict(
            feature_dim=feature_dim,
            num_tokens=num_tokens,
            latent_tokens=32,
            latent_dim=64,
            width=1024,
            depth=12,
            heads=16,
            mlp_ratio=4.0,
            positional_embedding=False,
            min_gap=1,
            max_gap=99,
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``config.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLAConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys (e.g. a checkpoint of another model type or a newer version).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"config has keys RLAConfig does not know: {unknown}; is this an RLA checkpoint "
                f"made by a compatible rla-gym version?"
            )
        return cls(**data)
