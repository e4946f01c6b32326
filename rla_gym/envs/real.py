"""``RealFeatureEnv``: the real simulator behind the dreamed env's observation and action interface.

A policy trained in ``RLAWorld-*`` sees encoder patch features ``(N, D)`` and emits a flattened
chunk of ``K`` actions. This env gives it exactly that interface on top of a real LIBERO,
robosuite or dm-control task, with the simulator's own reward: train in the real simulator to get
the "real-trained" baseline of a dream-trained policy, or evaluate a dream-trained policy with any
Gymnasium or SB3 tooling.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rla_gym.data.proprio import body_spec, body_vector
from rla_gym.envs.body import FEATURES, PROPRIO, observation_space
from rla_gym.envs.config import ActionMode, check_actions
from rla_gym.sims.base import SimStep
from rla_gym.sims.policies import ActionScale  # re-exported: its home is the sims room
from rla_gym.utils.configs import with_overrides

__all__ = [
    "DREAM_STEP_INFO",
    "REAL_STEP_INFO",
    "ActionScale",
    "RealFeatureConfig",
    "RealFeatureEnv",
]

# The step ``info`` schema shared by the dream and the real env: both report ``t`` (control steps
# since reset); success is the simulator's in the real env and a calibrated estimate in the dream,
# under different keys so that SB3 (which reads ``is_success``) never mistakes one for the other.
REAL_STEP_INFO = ("t", "success", "is_success", "control_steps")
"""Keys of every :meth:`RealFeatureEnv.step` ``info``."""
DREAM_STEP_INFO = ("t", "demo", "reward_l1", "dist_to_goal", "is_success_estimate")
"""Keys of every ``RLAWorld-*`` step ``info`` (plus ``progress`` / ``uncertainty`` when the
bundle or config provides them)."""


@dataclass(frozen=True, kw_only=True)
class RealFeatureConfig:
    """Every option of :class:`RealFeatureEnv`, validated once.

    The constructor accepts these fields as keyword arguments; ``config=`` passes a whole config
    instead (keyword arguments then override its fields).
    """

    sim: str = "dmc"
    """Real simulator: ``libero``, ``robosuite`` or ``dmc``."""
    task: str | None = None
    """Task within the simulator (``None``: its default task, e.g. ``reacher-easy``)."""
    resolution: int = 128
    """Square camera resolution; must match the features the policy was trained on."""
    encoder: str = "opennsfw-resnet50-res4"
    """Frozen encoder (a name of ``rla_gym.features.ENCODERS``); must match the policy's."""
    encoder_weights: str | None = None
    """Weights path or hub id for encoders that need one (``dinov2-*``)."""
    chunk: int = 8
    """``K``: control steps per env step (the dreamed env's chunk)."""
    action_mode: ActionMode = "chunk"
    """``chunk``: an action is a flattened ``(K, A)`` chunk; ``repeat``: one ``(A,)`` action held
    for the ``K`` control steps (as the dreamed env's option of the same name)."""
    max_episode_steps: int | None = None
    """Truncate after this many env steps (chunks); ``None``: the task's evaluation horizon
    ``ceil(sim.max_steps / chunk)``."""
    max_control_steps: int | Literal["task"] | None = None
    """Also truncate after this many control steps, cutting the last chunk short (``"task"``:
    the task's evaluation horizon ``sim.max_steps``; ``None``: no limit besides
    ``max_episode_steps``, which then defaults to ``ceil(max_control_steps / chunk)``). ``rla-gym
    eval`` stops at ``--max-steps`` this way."""
    terminate_on_success: bool | None = None
    """End the episode (``terminated``) at the first successful control step, skipping the rest
    of the chunk. ``None``: yes for LIBERO and robosuite (their evaluation protocol), no for
    dm-control, whose tasks have no terminal state and whose reward scores every step."""
    render_mode: str | None = None
    """``None`` or ``rgb_array`` (the last camera frame, ``uint8 (R, R, 3)``)."""
    obs_mode: Literal["patch", "features+proprio"] = "patch"
    """``patch``: ``(N, D)`` features; ``features+proprio``: ``{"features": (N, D), "proprio":
    (P,)}`` with the simulator's real body vector (:func:`rla_gym.data.proprio.body_vector`),
    the observation of a dreamed env whose world model dreams the body."""

    def __post_init__(self) -> None:
        from rla_gym.sims.base import check_resolution
        from rla_gym.sims.factory import SIMS

        if self.sim not in SIMS:
            raise ValueError(f"unknown simulator {self.sim!r}; choose one of: {', '.join(SIMS)}")
        check_resolution(self.resolution)
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        if self.action_mode not in ("chunk", "repeat"):
            raise ValueError(f"action_mode must be 'chunk' or 'repeat', got {self.action_mode!r}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.max_control_steps not in (None, "task") and self.max_control_steps < 1:
            raise ValueError(f"max_control_steps must be >= 1, got {self.max_control_steps}")
        if self.render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {self.render_mode!r}")
        if self.obs_mode not in ("patch", "features+proprio"):
            raise ValueError(
                f"obs_mode must be 'patch' or 'features+proprio', got {self.obs_mode!r}"
            )

    @classmethod
    def resolve(cls, config: RealFeatureConfig | None, **overrides: Any) -> RealFeatureConfig:
        """``config`` (default: all defaults) with ``overrides`` applied; unknown keys raise."""
        return with_overrides(cls, config, overrides, "RealFeatureEnv")


@functools.lru_cache(maxsize=4)
def _cached_encoder(name: str, weights: str | None) -> Any:
    # Several envs in one process (an SB3 DummyVecEnv) share one encoder session.
    from rla_gym.features import make_encoder

    return make_encoder(name, **({"weights": weights} if weights else {}))


class RealFeatureEnv(gym.Env[np.ndarray, np.ndarray]):
    """A real simulator task observed through a frozen encoder, acting in chunks.

    ## Description
    The real counterpart of ``RLAWorld-*``: the same observation and action spaces, but every
    step runs ``K`` control steps of the real simulator (LIBERO, robosuite or dm-control) and
    encodes the camera frame reached at the end of the chunk with the same frozen encoder the
    world model was trained on.

    ## Action Space
    ``Box(-1, 1, (K * A,), float32)``: a chunk of ``K`` actions flattened row-major from
    ``(K, A)`` (``action_mode="repeat"``: ``Box(-1, 1, (A,), float32)``, one action held for the
    ``K`` control steps), mapped linearly from ``[-1, 1]`` to the simulator's action bounds
    (identity for LIBERO, robosuite and reacher). Out-of-range, non-finite or wrongly shaped
    actions raise ``ValueError``.

    ## Observation Space
    ``Box(-inf, inf, (N, D), float32)``: patch features of the last rendered ``R x R`` frame
    (default encoder at 128 px: ``N = 64``, ``D = 512``). ``obs_mode="features+proprio"``:
    ``Dict(features=(N, D), proprio=(P,))`` with the robot's real body vector
    (:mod:`rla_gym.data.proprio`) at that frame, as a dreamed env that dreams the body shows it.

    ## Rewards
    The simulator's own task reward summed over the control steps executed in the chunk
    (dm-control reacher: 1 per step with the finger on the target; LIBERO and robosuite: their
    sparse success reward). ``info`` follows :data:`rla_gym.envs.real.REAL_STEP_INFO`:
    ``success`` (a control step of this chunk solved the task), ``is_success`` (the episode has
    been solved at some step; SB3 reads this key; the dream reports ``is_success_estimate``
    instead), ``control_steps`` (executed in this chunk) and ``t`` (control steps since reset).

    ## Starting State
    ``reset(seed=s)`` is deterministic. Simulators with fixed init states (LIBERO: 50) start
    from ``options["init_state_id"]`` if given, else from init state ``s % 50`` (a random one
    drawn with ``self.np_random`` when no seed is given). Other simulators are reset with seed
    ``s`` (or one drawn with ``self.np_random``), the same seeds ``evaluate_in_sim`` uses.

    ## Episode End
    Terminated at the first successful control step when ``terminate_on_success`` holds (default
    for LIBERO and robosuite). Truncated after ``max_episode_steps`` chunks (default: the task's
    evaluation horizon in chunks), or mid-chunk after ``max_control_steps`` control steps.

    ## Arguments
    ```python
    RealFeatureEnv(sim="dmc", task=None, resolution=128, encoder="opennsfw-resnet50-res4",
                   encoder_weights=None, chunk=8, action_mode="chunk", max_episode_steps=None,
                   max_control_steps=None, terminate_on_success=None, render_mode=None,
                   obs_mode="patch")
    RealFeatureEnv(config=RealFeatureConfig(...))  # the same, as one object
    ```
    Every option is a field of :class:`RealFeatureConfig` (documented there). Call
    :meth:`close` to release the simulator and its renderer.

    ## Version History
    * v0: initial release.

    Example:
        >>> env = RealFeatureEnv(sim="dmc", encoder="tiny", resolution=32)  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> obs.shape, env.action_space.shape  # doctest: +SKIP
        ((4, 16), (16,))
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, *, config: RealFeatureConfig | None = None, **kwargs: Any) -> None:
        from rla_gym.sims.factory import make_sim

        cfg = RealFeatureConfig.resolve(config, **kwargs)
        self.config = cfg
        self.render_mode = cfg.render_mode
        self.encoder = _cached_encoder(cfg.encoder, cfg.encoder_weights)
        self.sim = make_sim(cfg.sim, cfg.task, resolution=cfg.resolution)
        self.chunk, self.action_dim = cfg.chunk, int(self.sim.action_dim)
        limit = self.sim.max_steps if cfg.max_control_steps == "task" else cfg.max_control_steps
        self.max_control_steps: int | None = limit
        self.max_episode_steps = cfg.max_episode_steps or math.ceil(
            (limit or self.sim.max_steps) / cfg.chunk
        )
        self.terminate_on_success = (
            cfg.sim != "dmc" if cfg.terminate_on_success is None else cfg.terminate_on_success
        )
        gh, gw = self.encoder.grid_shape(cfg.resolution, cfg.resolution)
        # The same spaces as a dreamed env shows (its Dict when it dreams the body).
        body_dim = body_spec(cfg.sim).dim if cfg.obs_mode == "features+proprio" else 0
        self.observation_space: spaces.Space = observation_space(
            cfg.obs_mode, gh * gw, int(self.encoder.feature_dim), body_dim
        )
        self.action_mode: ActionMode = cfg.action_mode
        size = self.action_dim if cfg.action_mode == "repeat" else self.chunk * self.action_dim
        self.action_space = spaces.Box(-1.0, 1.0, (size,), np.float32)
        self.action_scale = ActionScale(self.sim)
        # The K - 1 frames inside a chunk, which no observation uses, are not rendered (~7x faster
        # on dm-control, ~4x on robosuite). When a chunk stops early on success, the frame of the
        # step that ended it is rendered afterwards from the exactly restored state. Every frame
        # is rendered only for ``render_mode="rgb_array"`` (videos show every control step).
        self._lazy_render = self.render_mode is None
        self._frame: np.ndarray | None = None
        self._frames: list[np.ndarray] = []
        self._elapsed = 0
        self._t = 0
        self._solved = False

    @property
    def action_space_desc(self) -> str:
        """The action space in words, for error messages."""
        k, a = self.chunk, self.action_dim
        if self.action_mode == "repeat":
            return (f"Box(-1.0, 1.0, ({a},), float32): one action of size A={a}, held for the "
                    f"K={k} control steps of a chunk")  # fmt: skip
        return (f"Box(-1.0, 1.0, ({k * a},), float32): a chunk of K={k} actions of size A={a}, "
                f"flattened row-major from (K, A)")  # fmt: skip

    def to_sim_action(self, action: np.ndarray) -> np.ndarray:
        """Normalised ``[-1, 1]`` actions ``(..., A)`` -> simulator units ``float32 (..., A)``
        (:meth:`ActionScale.to_sim`)."""
        return self.action_scale.to_sim(action)

    def from_sim_action(self, raw: np.ndarray) -> np.ndarray:
        """Simulator-unit actions ``(..., A)`` -> normalised ``float32 (..., A)``
        (:meth:`ActionScale.from_sim`, the inverse of :meth:`to_sim_action`)."""
        return self.action_scale.from_sim(raw)

    @property
    def chunk_frames(self) -> np.ndarray | None:
        """Camera frames of the control steps of the last ``step`` (or the reset frame),
        ``uint8 (k, R, R, 3)``: every step's with ``render_mode="rgb_array"``, else only the
        last; ``None`` before ``reset``."""
        return None if not self._frames else np.stack(self._frames)

    def _observe(self, obs: SimStep) -> np.ndarray | dict[str, np.ndarray]:
        self._frame = obs.frame
        feats = self.encoder.encode(obs.frame[None])[0].astype(np.float32, copy=False)
        if self.config.obs_mode == "features+proprio":
            return {FEATURES: feats, PROPRIO: body_vector(self.config.sim, obs.proprio)}
        return feats

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        """Start a real episode (see the class docstring for seeds and ``options``)."""
        super().reset(seed=seed)
        options = dict(options or {})
        init_id = options.get("init_state_id")
        n_init = self.sim.num_init_states
        if n_init and init_id is None:
            init_id = seed % n_init if seed is not None else int(self.np_random.integers(n_init))
        sim_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        obs = self.sim.reset(seed=sim_seed, init_state_id=init_id)
        self._elapsed, self._t, self._solved = 0, 0, bool(obs.success)
        self._frames = [obs.frame]
        info = {"t": 0, "seed": sim_seed, "init_state_id": -1 if init_id is None else int(init_id),
                "success": bool(obs.success), "is_success": self._solved}  # fmt: skip
        return self._observe(obs), info

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray | dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Run one chunk of ``K`` control steps in the real simulator."""
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a = check_actions(action, self.action_space.shape, self.action_space_desc)
        # A repeated action is the chunk with that action at every one of the K control steps.
        a = np.broadcast_to(a.reshape(-1, self.action_dim), (self.chunk, self.action_dim))
        raw = self.to_sim_action(a)
        limit = self.max_control_steps
        reward, success, done, steps = 0.0, False, False, 0
        obs, self._frames = None, []
        for k in range(self.chunk):
            cut = limit is not None and self._t + steps + 1 >= limit
            last = k == self.chunk - 1 or cut
            obs = self.sim.step(raw[k], render=not self._lazy_render or last)
            if not self._lazy_render or last:
                self._frames.append(obs.frame)
            reward += float(obs.reward)
            steps += 1
            success = success or bool(obs.success)
            if success and self.terminate_on_success:
                done = True
            if done or cut:
                break
        assert obs is not None
        if self._lazy_render and not (k == self.chunk - 1 or cut):
            # Stopped early without a frame: render the state reached, restored exactly in place.
            obs = self.sim.set_sim_state(self.sim.get_sim_state(), render=True)
            self._frames.append(obs.frame)
        self._elapsed += 1
        self._t += steps
        self._solved = self._solved or success
        out_of_steps = limit is not None and self._t >= limit
        truncated = not done and (self._elapsed >= self.max_episode_steps or out_of_steps)
        info = {"success": success, "is_success": self._solved, "control_steps": steps,
                "t": self._t}  # fmt: skip
        return self._observe(obs), reward, done, truncated, info

    def render(self) -> np.ndarray | None:
        """The last camera frame, ``uint8 (R, R, 3)`` (``rgb_array`` mode)."""
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        """Release the simulator and its renderer (safe to call twice)."""
        sim = getattr(self, "sim", None)
        if sim is not None:
            sim.close()
            self.sim = None  # type: ignore[assignment]
        super().close()
