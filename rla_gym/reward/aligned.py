"""Video-aligned reward (paper §8.1, "VAR"): compare imagined features with a reference demo.

Because a dreamed rollout is time-synchronised with the reference video it started from, the
reward at chunk index ``j`` is the negative feature distance between the predicted features
``ŝ`` and the demo's features at the same index (``mode="aligned"``), or its final frame
(``mode="goal"``). Nothing here touches a simulator or a world model: the reward sees only
features, so no ground-truth signal can leak into a dreamed episode.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["AlignedReward", "feature_distance"]

RewardMode = Literal["aligned", "goal"]
RewardMetric = Literal["l1", "cosine"]


def feature_distance(a: torch.Tensor, b: torch.Tensor, metric: RewardMetric = "l1") -> torch.Tensor:
    """Per-row distance between token grids.

    Args:
        a: ``(B, N, D)`` features.
        b: ``(B, N, D)`` features.
        metric: ``"l1"`` (mean absolute difference over tokens and channels) or ``"cosine"``
            (``1 - cos`` per token, averaged over tokens).

    Returns:
        ``(B,)`` distances (0 for identical inputs).
    """
    if metric == "l1":
        return (a - b).abs().mean(dim=(1, 2))
    if metric == "cosine":
        return 1.0 - torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8).mean(dim=1)
    raise ValueError(f"unknown reward metric {metric!r}; use 'l1' or 'cosine'")


class AlignedReward:
    """Negative distance of predicted features to a reference demo, time-aligned or to its goal.

    Args:
        reference: ``(R, T_ref, N, D)`` features of ``R`` reference demos at every ``K``-th frame
            (row ``j`` is control step ``j * K``); shorter demos are padded with their last frame,
            so ``reference[:, -1]`` is each demo's goal.
        mode: ``"aligned"`` compares with ``reference[demo, min(t, T_ref - 1)]``, ``"goal"``
            with ``reference[demo, -1]``.
        metric: ``"l1"`` or ``"cosine"`` (see :func:`feature_distance`).
        scale: reward multiplier (paper: 5.0); ``reward = -scale * distance``.
        success_threshold: L1 distance to the goal below which ``is_success_estimate`` is true
            (calibrated when the bundle is built, see :mod:`rla_gym.pipelines.build_bundle`);
            ``None`` disables it.

    Example:
        >>> ref = torch.zeros(2, 5, 4, 8)
        >>> r, terms = AlignedReward(ref)(torch.ones(3, 4, 8), torch.tensor([0, 1, 1]),
        ...                               torch.tensor([0, 2, 9]))
        >>> r.tolist()
        [-5.0, -5.0, -5.0]
    """

    def __init__(
        self,
        reference: torch.Tensor,
        mode: RewardMode = "aligned",
        metric: RewardMetric = "l1",
        scale: float = 5.0,
        success_threshold: float | None = None,
    ) -> None:
        if reference.ndim != 4:
            raise ValueError(
                f"reference must have shape (R, T_ref, N, D), got {tuple(reference.shape)}"
            )
        if mode not in ("aligned", "goal"):
            raise ValueError(f"unknown reward mode {mode!r}; use 'aligned' or 'goal'")
        if metric not in ("l1", "cosine"):
            raise ValueError(f"unknown reward metric {metric!r}; use 'l1' or 'cosine'")
        if scale <= 0:
            raise ValueError(f"reward scale must be positive, got {scale}")
        self.reference = reference.float()
        self.mode: RewardMode = mode
        self.metric: RewardMetric = metric
        self.scale = float(scale)
        self.success_threshold = success_threshold

    @property
    def num_demos(self) -> int:
        """``R``."""
        return int(self.reference.shape[0])

    @property
    def ref_len(self) -> int:
        """``T_ref``: reference rows per demo."""
        return int(self.reference.shape[1])

    def target_rows(self, t_idx: torch.Tensor) -> torch.Tensor:
        """The reference row the reward compares each prediction with, ``(B,)`` -> ``(B,)`` on the
        reference's device: ``t`` clamped to the rows (``aligned``; shorter demos are padded
        with their last frame) or the last row (``goal``). Anything stored per reference row
        (e.g. the bundle's reference bodies) is read at these rows too."""
        t = t_idx.to(self.reference.device, torch.long)
        if self.mode == "goal":
            return torch.full_like(t, self.ref_len - 1)
        return t.clamp(0, self.ref_len - 1)

    def targets(self, demo_idx: torch.Tensor, t_idx: torch.Tensor) -> torch.Tensor:
        """Reference features the reward compares with: ``(B,)``, ``(B,)`` -> ``(B, N, D)``."""
        demo_idx = demo_idx.to(self.reference.device, torch.long)
        return self.reference[demo_idx, self.target_rows(t_idx)]

    def __call__(
        self, pred: torch.Tensor, demo_idx: torch.Tensor, t_idx: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reward of predicted features.

        Args:
            pred: ``(B, N, D)`` predicted features ``ŝ``.
            demo_idx: ``(B,)`` reference demo of each row.
            t_idx: ``(B,)`` reference row (chunk index) each prediction corresponds to.

        Returns:
            ``(reward (B,), terms)`` where terms holds ``(B,)`` tensors: ``reward_l1`` (L1 to the
            aligned reference row, whatever the mode), ``distance`` (the metric the reward used),
            ``dist_to_goal`` (L1 to the demo's final row) and ``is_success_estimate`` (bool;
            all false without a threshold).
        """
        if pred.ndim != 3 or pred.shape[1:] != self.reference.shape[2:]:
            raise ValueError(
                f"pred must have shape (B, {self.reference.shape[2]}, {self.reference.shape[3]}), "
                f"got {tuple(pred.shape)}"
            )
        pred = pred.to(self.reference.device, torch.float32)
        demo = demo_idx.to(self.reference.device, torch.long)
        t = t_idx.to(self.reference.device, torch.long).clamp(0, self.ref_len - 1)
        aligned = self.reference[demo, t]
        goal = self.reference[demo, -1]
        target = goal if self.mode == "goal" else aligned
        distance = feature_distance(pred, target, self.metric)
        dist_to_goal = feature_distance(pred, goal, "l1")
        reward_l1 = feature_distance(pred, aligned, "l1")
        if self.success_threshold is None:
            success = torch.zeros_like(dist_to_goal, dtype=torch.bool)
        else:
            success = dist_to_goal < self.success_threshold
        terms = {
            "reward_l1": reward_l1,
            "distance": distance,
            "dist_to_goal": dist_to_goal,
            "is_success_estimate": success,
        }
        return -self.scale * distance, terms
