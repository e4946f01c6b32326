"""The options of a dreamed env and the action contract every env shell checks.

:class:`RLAWorldConfig` is validated once, here, so the single env, the vector env and
:class:`~rla_gym.envs.core.DreamCore` read fields they can trust; :func:`check_actions` is the
one action check of the dreamed and the real env (:mod:`rla_gym.envs.real`), so both refuse the
same actions with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from rla_gym.utils.configs import with_overrides

__all__ = [
    "OBS_MODES",
    "ActionMode",
    "ObsMode",
    "RLAWorldConfig",
    "RenderBackend",
    "RewardMetric",
    "RewardMode",
    "SuccessEstimate",
    "check_actions",
    "pick_device",
]

ObsMode = Literal["auto", "patch", "dict", "features+proprio"]
OBS_MODES = ("auto", "patch", "dict", "features+proprio")
ActionMode = Literal["chunk", "repeat"]
RewardMode = Literal["aligned", "goal", "progress"]
RewardMetric = Literal["l1", "cosine"]
RenderBackend = Literal["auto", "decoder", "nearest"]
SuccessEstimate = Literal["auto", "progress_head", "goal_distance"]
BodyDynamicsSource = Literal["auto", "body_model", "world_model"]


def pick_device(device: str) -> str:
    """The torch device name of the ``device`` option (``auto``: the GPU when present).

    Raises:
        ValueError: not ``cpu``, ``cuda[:i]`` or ``auto``.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda[:i]' or 'auto', got {device!r}")
    return device


def check_actions(actions: Any, shape: tuple[int, ...], space: str) -> np.ndarray:
    """Validate actions in the normalised space and return them as ``float32``.

    Raises:
        ValueError: wrong shape, NaN/inf, or outside ``[-1, 1]``; the message names ``space``.
    """
    a = np.asarray(actions, dtype=np.float32)
    if a.shape != shape:
        raise ValueError(f"action has shape {a.shape}, expected {space}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf; expected finite values in {space}")
    if np.any(np.abs(a) > 1.0 + 1e-6):
        raise ValueError(
            f"action is outside [-1, 1] (min {a.min():.3g}, max {a.max():.3g}); expected {space}"
        )
    return a


@dataclass(frozen=True, kw_only=True)
class RLAWorldConfig:
    """Every option of a dreamed env (single or batched), validated once.

    ``gym.make(id, **kwargs)`` and the env constructors accept these fields as keyword arguments;
    ``config=`` passes a whole config instead (keyword arguments then override its fields).
    """

    artifacts: str | None = None
    """Bundle folder (``None``: the suite's embedded default ``rla_gym/envs/assets/<suite>/``)."""
    suite: str = "libero"
    """Suite of the embedded default (``libero``, ``robosuite-lift``, ``dmc-reacher``)."""
    device: str = "cpu"
    """``cpu``, ``cuda[:i]`` or ``auto`` (GPU when present)."""
    flow_steps: int = 10
    """Euler steps of the flow sampler per env step."""
    reward_mode: RewardMode = "aligned"
    """``aligned``: distance to the reference demo at the same time index; ``goal``: to its final
    frame; ``progress``: ``reward_scale`` x the bundle's learned progress head (in ``[0, 1]``,
    trained on real expert, noisy, failed and random episodes; the bundle must ship one)."""
    success_estimate: SuccessEstimate = "auto"
    """What ``info["is_success_estimate"]`` reads. ``progress_head``: the bundle's learned head
    (success logit > 0; trained and calibrated on real frames); ``goal_distance``: L1 of the
    dreamed features to the aligned demo's final frame under the bundle's threshold, calibrated
    on dreamed replays of labelled real episodes (``manifest.json`` ``success``); ``auto``: the
    distance when that calibration separated the dreamed replays well
    (``envs.core.TRUSTED_DREAM_CALIBRATION``: LIBERO, Lift), else the head (reacher). On LIBERO
    the head, calibrated on real frames, never fires on a dream, not even on the expert's
    replayed actions (``benchmarks/closed_loop.py``)."""
    reward_metric: RewardMetric = "l1"
    """``l1`` (mean absolute difference) or ``cosine`` (1 - cosine similarity per token)."""
    reward_scale: float = 5.0
    """Reward multiplier."""
    reward_proprio_weight: float = 0.0
    """The robot's body in the ``aligned`` / ``goal`` reward: minus this weight times the
    distance of the dreamed body to the reference demo's body at the same row (``goal``: its last
    row), in the world model's standardised body units (the mean absolute difference per entry).
    Needs a bundle whose world model dreams the body. ``0``: the features alone."""
    obs_mode: ObsMode = "auto"
    """``patch``: ``(N, D)`` features; ``dict``: ``{"patch", "pooled"}``; ``features+proprio``:
    ``{"features": (N, D), "proprio": (P,)}``, the features and the robot's dreamed body vector
    (:mod:`rla_gym.data.proprio`; the bundle's world model must dream it, else ``ValueError``);
    ``auto``: ``features+proprio`` when the bundle's world model dreams the body, else
    ``patch`` (every bundle built before the body existed)."""
    render_mode: str | None = None
    """``None`` or ``rgb_array`` (a frame of the dreamed state; ``render_backend`` says how)."""
    render_backend: RenderBackend = "auto"
    """How ``rgb_array`` frames are made: ``decoder``: the bundle's frame decoder applied to the
    dreamed features (the bundle must ship one); ``nearest``: the real frame of the bundle's render
    bank whose token-mean features are closest; ``auto``: the decoder when the bundle has one,
    otherwise nearest."""
    body_dynamics: BodyDynamicsSource = "auto"
    """Where a dream that carries the robot's body gets the next body from: ``body_model``: the
    bundle's own body dynamics (``body/``, ``rla-gym add-body-model``: the body and the action
    chunk alone; under a policy's own actions from held-out real starts it keeps reacher's
    fingertip 0.2-0.7 cm from the real one over 5 chunks, where the world model's head drifts
    4-12 cm: ``benchmarks/body_dynamics.py``); ``world_model``: the world model's body head (it
    also reads the scene); ``auto``: the body model when the bundle ships one."""
    num_uncertainty_samples: int = 0
    """``S``: with ``S >= 2`` every step draws ``S`` flow samples and reports their spread in
    ``info["uncertainty"]``. The state follows sample 0, whose noise is drawn exactly as without
    the option (the extra samples come from a second stream), so the dream is unchanged."""
    uncertainty_penalty: float = 0.0
    """Minus this weight times ``info["uncertainty"]`` in every step's reward (needs
    ``num_uncertainty_samples >= 2``): a policy that leads the world model to states it is unsure
    of pays for it, as in model-based offline RL. On Lift the spread grows with how far residual
    PPO exploits the dream (``benchmarks/exploit_signal.py``). ``0``: off."""
    reward_samples: int = 1
    """``R``: with ``R >= 2`` every step draws ``R`` flow samples and pays the mean of their
    rewards; the reward's terms (``reward_l1``, ``dist_to_goal``, ``progress``) are means too and
    ``is_success_estimate`` is the samples' majority vote. Only the reward is averaged: the state
    follows sample 0 as with ``num_uncertainty_samples`` (same seed, same observations as
    ``R = 1``, up to float rounding of the larger batch). ``max(S, R)`` samples are drawn in one
    batched world-model call: a step integrates that many flow rows per env, which costs a single
    CPU env little (``R = 8``: about 1.2-1.6x the step time) and a large batch about ``R`` times
    (``benchmarks/reward_samples.py``)."""
    world_model: str | None = None
    """Another world-model checkpoint to dream with instead of the bundle's (same encoder, same
    action chunks): compare models or ablations on one bundle's starts, reward and spaces."""
    guidance: float = 1.0
    """Classifier-free guidance weight over the action at every dreamed step (``1``: off; ``> 1``
    amplifies how much the action changes the prediction, at twice the flow cost). Needs a bundle
    whose world model was trained with action dropout; otherwise the env raises at construction."""
    max_episode_steps: int | None = None
    """Truncation after this many env steps (chunks). ``None``: the bundle's horizon, recorded in
    its manifest — the one number every way of building the env (``gym.make``,
    ``gym.make_vec``, the classes directly, the pipelines) reads."""
    reset_demo_fraction: float = 0.0
    """Probability that a reset with no ``start`` option (every autoreset while training)
    starts at a random interior row of a random reference demo instead of a reset-bank start
    (paper: 0.5, with episodes of at most 6 chunks). A training option: evaluations pass
    ``start`` explicitly and are unaffected."""
    reset_starts: str | None = None
    """A dataset folder (``rla-gym collect`` + ``encode`` with the bundle's encoder, same
    simulator and task) whose episodes' first frames, with their bodies, replace the bundle's
    reset bank as the ``init`` starts. A bundle ships few starts (reacher: 16, one per target,
    to stay under 10 MB); a policy trained in the dream from those alone learns those targets.
    Each start's reward aligns with the nearest reference demo. ``None``: the bundle's bank."""
    action_mode: ActionMode = "chunk"
    """``chunk``: an action is a flattened ``(K, A)`` chunk, ``(K * A,)``; ``repeat``: one
    ``(A,)`` action held for the ``K`` control steps of a chunk (DMC-style action repeat)."""

    def __post_init__(self) -> None:
        if self.flow_steps < 1:
            raise ValueError(f"flow_steps must be >= 1, got {self.flow_steps}")
        if not (self.guidance >= 0 and np.isfinite(self.guidance)):
            raise ValueError(f"guidance must be a finite weight >= 0, got {self.guidance}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(
                f"max_episode_steps must be >= 1 or None, got {self.max_episode_steps}"
            )
        if not 0.0 <= self.reset_demo_fraction <= 1.0:
            raise ValueError(
                f"reset_demo_fraction must be in [0, 1], got {self.reset_demo_fraction}"
            )
        if self.num_uncertainty_samples < 0 or self.num_uncertainty_samples == 1:
            raise ValueError(
                "num_uncertainty_samples must be 0 (off) or >= 2, got "
                f"{self.num_uncertainty_samples}"
            )
        if not (self.uncertainty_penalty >= 0 and np.isfinite(self.uncertainty_penalty)):
            raise ValueError(
                f"uncertainty_penalty must be a finite weight >= 0, got {self.uncertainty_penalty}"
            )
        if self.uncertainty_penalty > 0 and self.num_uncertainty_samples < 2:
            raise ValueError(
                "uncertainty_penalty needs num_uncertainty_samples >= 2 (the spread it charges "
                f"is measured between flow samples), got {self.num_uncertainty_samples}"
            )
        if self.reward_samples < 1:
            raise ValueError(
                f"reward_samples must be >= 1 (1: the reward of the one dreamed state), got "
                f"{self.reward_samples}"
            )
        if self.reward_mode not in ("aligned", "goal", "progress"):
            raise ValueError(
                f"reward_mode must be 'aligned', 'goal' or 'progress', got {self.reward_mode!r}"
            )
        if self.success_estimate not in ("auto", "progress_head", "goal_distance"):
            raise ValueError(
                "success_estimate must be 'auto', 'progress_head' or 'goal_distance', got "
                f"{self.success_estimate!r}"
            )
        if not self.reward_proprio_weight >= 0:
            raise ValueError(
                f"reward_proprio_weight must be >= 0, got {self.reward_proprio_weight}"
            )
        if self.reward_metric not in ("l1", "cosine"):
            raise ValueError(f"reward_metric must be 'l1' or 'cosine', got {self.reward_metric!r}")
        if self.action_mode not in ("chunk", "repeat"):
            raise ValueError(f"action_mode must be 'chunk' or 'repeat', got {self.action_mode!r}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if self.render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {self.render_mode!r}")
        if self.body_dynamics not in ("auto", "body_model", "world_model"):
            raise ValueError(
                f"body_dynamics must be 'auto', 'body_model' or 'world_model', got "
                f"{self.body_dynamics!r}"
            )
        if self.render_backend not in ("auto", "decoder", "nearest"):
            raise ValueError(
                f"render_backend must be 'auto', 'decoder' or 'nearest', got "
                f"{self.render_backend!r}"
            )
        pick_device(self.device)

    @classmethod
    def resolve(cls, config: RLAWorldConfig | None, **overrides: Any) -> RLAWorldConfig:
        """``config`` (default: all defaults) with ``overrides`` applied; unknown keys raise."""
        return with_overrides(cls, config, overrides, "RLAWorld")
