"""Variable-length action-chunk encoder: per-step MLP + GRU with packing -> one action vector."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = ["ActionChunkEncoder"]


class ActionChunkEncoder(nn.Module):
    """Encode ``a_{t:t+h}`` (``1 <= h <= H_max``) into one vector.

    As in the official RLA-WM, the chunk length is not embedded separately: a GRU over the packed
    (unpadded) sequence sees exactly ``h`` steps, so the horizon is implicit in its final state and
    one model serves every ``h``.

    Args:
        action_dim: ``A``.
        hidden: width of the per-step MLP.
        out_dim: GRU hidden size = size of the returned action vector.
    """

    def __init__(self, action_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.step_mlp = nn.Sequential(
            nn.Linear(action_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.gru = nn.GRU(hidden, out_dim, num_layers=1, batch_first=True)

    def forward(self, actions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encode a padded batch of chunks.

        Args:
            actions: ``(B, H, A)`` normalised actions, zero-padded after each chunk's length.
            lengths: ``(B,)`` integer chunk lengths in ``[1, H]``.

        Returns:
            ``(B, out_dim)`` action vectors.
        """
        x = self.step_mlp(actions)
        # Packing makes the final hidden state the one after step h of each row (padding is never
        # read), so padded and unpadded calls give identical vectors.
        packed = pack_padded_sequence(
            x, lengths.detach().to("cpu", torch.int64), batch_first=True, enforce_sorted=False
        )
        _, h_n = self.gru(packed)
        return h_n[-1]
