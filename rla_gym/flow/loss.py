"""Flow-matching regression loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["flow_loss"]


def flow_loss(
    v_pred: torch.Tensor,
    v_target: torch.Tensor,
    l1_weight: float = 1.0,
    mse_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted ``L1 + MSE`` between predicted and target velocities (means over all elements).

    The official RLA-WM configs use both terms with weight 1; the paper text mentions MSE only, so
    both weights are exposed.

    Args:
        v_pred: predicted velocity ``(B, ...)``.
        v_target: target velocity, same shape.
        l1_weight: weight of the mean absolute error.
        mse_weight: weight of the mean squared error.

    Returns:
        Scalar loss tensor.
    """
    if v_pred.shape != v_target.shape:
        raise ValueError(
            f"v_pred {tuple(v_pred.shape)} and v_target {tuple(v_target.shape)} differ in shape"
        )
    loss = v_pred.new_zeros(())
    if l1_weight:
        loss = loss + l1_weight * F.l1_loss(v_pred, v_target)
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(v_pred, v_target)
    return loss
