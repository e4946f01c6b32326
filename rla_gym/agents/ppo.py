"""PPO for any Gymnasium vector env, torch end to end.

The update follows the usual recipe (CleanRL / SB3): GAE, per-minibatch advantage normalisation,
ratio clipping, optional value clipping, entropy bonus, target-KL early stop and gradient clipping.
Two things deserve care with Gymnasium 1.x vector envs:

* **Autoreset.** With ``AutoresetMode.NEXT_STEP`` (the default of ``SyncVectorEnv``) the step after
  a done is a *reset step*: the action is ignored and the returned reward is 0. Those rows are kept
  in the buffer (their observation is the episode's final observation, whose value bootstraps a
  truncation) but masked out of the loss. With ``SAME_STEP`` the next observation is already the
  reset one, so truncations bootstrap from ``V(info["final_obs"])``. ``DISABLED`` is refused.
* **Array types.** Numpy envs get numpy actions; an env that returns torch tensors (a native
  torch-batched env) gets torch actions on its own device, with no host round trip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from rla_gym.agents._math import (
    compute_gae,
    explained_variance,
    group_relative,
    group_seeds,
    ppo_clip_loss,
    value_loss,
)
from rla_gym.agents.config import PPOConfig
from rla_gym.agents.networks import ActorCritic, SpaceMismatchError, check_spaces
from rla_gym.errors import RLAGymError
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint
from rla_gym.utils.device import resolve_device

__all__ = ["PPO", "RolloutBuffer", "UnsupportedEnvError"]

Callback = Callable[["PPO", dict[str, float]], "bool | None"]


class UnsupportedEnvError(RLAGymError, ValueError):
    """The env cannot be driven by PPO as given (e.g. autoreset disabled)."""


def _autoreset_mode(env: gym.vector.VectorEnv) -> AutoresetMode:
    mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if isinstance(mode, AutoresetMode):
        return mode
    for member in AutoresetMode:  # accept "NextStep", "next_step", "NEXT_STEP"
        if str(mode).replace("_", "").lower() == member.value.lower():
            return member
    raise UnsupportedEnvError(f"unknown autoreset_mode {mode!r} in env.metadata")


def _as_vector_env(env: gym.Env | gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    if isinstance(env, gym.vector.VectorEnv):
        return env
    if isinstance(env, gym.Env):
        # The single env becomes a one-env SyncVectorEnv, which autoresets with NEXT_STEP.
        return gym.vector.SyncVectorEnv([lambda: env])
    raise UnsupportedEnvError(
        f"PPO needs a gymnasium.Env or gymnasium.vector.VectorEnv, got {type(env).__name__}"
    )


@dataclasses.dataclass
class RolloutBuffer:
    """One iteration of experience, ``T = n_steps`` rows of ``B = num_envs``, on the device.

    Attributes:
        obs: ``(T, B, *obs_shape)`` observations the actions were taken at.
        actions: ``(T, B, A)`` unclipped sampled actions.
        log_probs: ``(T, B)`` their log-probabilities at collection time.
        values: ``(T, B)`` ``V(obs)`` at collection time.
        rewards: ``(T, B)`` scaled rewards.
        terminated: ``(T, B)`` bool.
        truncated: ``(T, B)`` bool.
        valid: ``(T, B)`` bool; False on NEXT_STEP reset steps, which are excluded from the loss.
        final_values: ``(T, B)`` value of the true final observation where truncated (SAME_STEP).
        last_value: ``(B,)`` value of the observation after the last row.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    valid: torch.Tensor
    final_values: torch.Tensor
    last_value: torch.Tensor

    @classmethod
    def empty(
        cls,
        steps: int,
        envs: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: torch.device,
    ) -> RolloutBuffer:
        """Zero-filled buffer."""
        z = lambda *s, dtype=torch.float32: torch.zeros(s, dtype=dtype, device=device)  # noqa: E731
        return cls(
            obs=z(steps, envs, *obs_shape),
            actions=z(steps, envs, action_dim),
            log_probs=z(steps, envs),
            values=z(steps, envs),
            rewards=z(steps, envs),
            terminated=z(steps, envs, dtype=torch.bool),
            truncated=z(steps, envs, dtype=torch.bool),
            valid=z(steps, envs, dtype=torch.bool),
            final_values=z(steps, envs),
            last_value=z(envs),
        )


class PPO:
    """Proximal policy optimisation with a Gaussian :class:`ActorCritic`.

    Args:
        env: a ``gymnasium.vector.VectorEnv`` (sync, async or native torch-batched) or a single
            ``gymnasium.Env`` (wrapped in a one-env ``SyncVectorEnv``); ``None`` for a
            prediction-only agent (e.g. from :meth:`load`).
        config: hyper-parameters.
        policy: an existing policy (e.g. from
            :func:`~rla_gym.agents.bc.make_residual_policy`); built from ``config.policy`` if None.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Raises:
        UnsupportedSpaceError: the action space is not a ``Box`` (or the observations are not
            ``(D,)`` / ``(N, D)`` boxes).
        SpaceMismatchError: ``policy`` was built for other observation / action shapes.
        UnsupportedEnvError: the vector env has autoreset disabled.

    Example:
        >>> import gymnasium as gym
        >>> from rla_gym.agents import PPO, PPOConfig
        >>> agent = PPO(gym.make("Pendulum-v1"), PPOConfig(n_steps=64), device="cpu")
        >>> agent = agent.learn(128, progress_bar=False)
        >>> agent.predict(agent.env.observation_space.sample()[0])[0].shape
        (1,)
    """

    MODEL_TYPE: ClassVar[str] = "ppo"
    """``config.json`` type of its checkpoints (the weights are the policy's)."""

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv | None,
        config: PPOConfig | None = None,
        policy: ActorCritic | None = None,
        device: str | torch.device = "auto",
    ) -> None:
        self.config = config = config or PPOConfig()
        self.device = resolve_device(device)
        torch.manual_seed(config.seed)
        self.env: gym.vector.VectorEnv | None = None
        if env is not None:
            self.env = _as_vector_env(env)
            obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
            check_spaces(obs_space, act_space)
            self.autoreset_mode = _autoreset_mode(self.env)
            if self.autoreset_mode == AutoresetMode.DISABLED:
                raise UnsupportedEnvError(
                    "PPO needs an autoresetting vector env; create it with "
                    "autoreset_mode=AutoresetMode.NEXT_STEP or SAME_STEP"
                )
            self.num_envs = self.env.num_envs
            if self.num_envs % config.group_size:
                raise ValueError(
                    f"group_size {config.group_size} does not divide num_envs {self.num_envs}"
                )
            self.action_shape = tuple(act_space.shape)
            action_dim = int(np.prod(self.action_shape))
            if policy is None:
                policy = ActorCritic(
                    obs_space.shape,
                    action_dim,
                    config.policy,
                    action_low=act_space.low.reshape(-1),
                    action_high=act_space.high.reshape(-1),
                )
            if tuple(policy.observation_shape) != tuple(obs_space.shape):
                raise SpaceMismatchError(
                    f"the policy was built for observations of shape {policy.observation_shape} "
                    f"but the env gives {tuple(obs_space.shape)}; use an env with the same "
                    f"observation space (same encoder and patch grid) or train a new policy"
                )
            if policy.action_dim != action_dim:
                raise SpaceMismatchError(
                    f"the policy outputs {policy.action_dim} action values but the env's action "
                    f"space {act_space} has {action_dim}; check the action chunk size"
                )
        elif policy is None:
            raise ValueError("PPO(env=None) needs a policy (or use PPO.load)")
        self.policy = policy.to(self.device)
        self.optimizer = self._make_optimizer()
        self.num_timesteps = 0
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.episode_returns: deque[float] = deque(maxlen=100)
        self.episode_lengths: deque[int] = deque(maxlen=100)
        self._generator = torch.Generator().manual_seed(config.seed)
        self._obs: torch.Tensor | None = None
        self._torch_env = False
        self._env_device: torch.device | None = None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = [
            {"params": self.policy.actor_parameters(), "lr": cfg.learning_rate},
            {
                "params": self.policy.critic_parameters(),
                "lr": cfg.critic_learning_rate or cfg.learning_rate,
            },
        ]
        for g in groups:
            g["initial_lr"] = g["lr"]
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, eps=1e-5)

    # -- env plumbing ----------------------------------------------------------------------------

    def _to_tensor(self, x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(x, dtype=dtype, device=self.device)

    def _reset(self) -> None:
        assert self.env is not None
        cfg = self.config
        # A group shares its seed: the same start and, in a dreamed env, the same flow noise.
        # Autoresets draw from each env's own (identically seeded) stream, so equal-length
        # episodes keep the group in step.
        seed: int | list[int] = cfg.seed
        if cfg.group_size > 1:
            seed = group_seeds(cfg.seed, self.num_envs, cfg.group_size)
        obs, _ = self.env.reset(seed=seed)
        self._torch_env = torch.is_tensor(obs)
        self._env_device = obs.device if self._torch_env else None
        self._obs = self._to_tensor(obs)
        self._prev_done = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._ep_return = torch.zeros(self.num_envs, device=self.device)
        self._ep_length = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def _env_action(self, action: torch.Tensor) -> Any:
        action = self.policy.clip_action(action).reshape(self.num_envs, *self.action_shape)
        if self._torch_env:
            return action.to(self._env_device)
        return action.cpu().numpy().astype(self.env.single_action_space.dtype)  # type: ignore[union-attr]

    def _final_values(self, info: dict[str, Any], truncated: torch.Tensor) -> torch.Tensor | None:
        """``V`` of ``info["final_obs"]`` for truncated envs (SAME_STEP), zeros elsewhere."""
        idx = truncated.nonzero().squeeze(1)
        if idx.numel() == 0 or "final_obs" not in info:
            return None
        final = info["final_obs"]
        rows = idx.cpu()
        if torch.is_tensor(final):
            stacked = final[rows.to(final.device)]
        else:
            stacked = np.stack([np.asarray(final[i]) for i in rows.tolist()])
        out = torch.zeros(self.num_envs, device=self.device)
        out[idx] = self.policy.value(self._to_tensor(stacked))
        return out

    # -- rollout and update ----------------------------------------------------------------------

    @torch.no_grad()
    def collect_rollout(self) -> RolloutBuffer:
        """Step the env ``n_steps`` times and return the filled buffer (GAE not yet applied)."""
        if self.env is None:
            raise UnsupportedEnvError("this PPO has no env; pass one to PPO.load(path, env=...)")
        if self._obs is None:
            self._reset()
        assert self._obs is not None
        cfg = self.config
        buf = RolloutBuffer.empty(
            cfg.n_steps,
            self.num_envs,
            self.policy.observation_shape,
            self.policy.action_dim,
            self.device,
        )
        next_step = self.autoreset_mode == AutoresetMode.NEXT_STEP
        self.policy.eval()
        for t in range(cfg.n_steps):
            action, logp, value = self.policy.act(self._obs)
            buf.obs[t], buf.actions[t], buf.log_probs[t], buf.values[t] = (
                self._obs,
                action,
                logp,
                value,
            )
            # NEXT_STEP: an env that was done last step resets now and ignores the action.
            valid = ~self._prev_done if next_step else torch.ones_like(self._prev_done)
            obs, reward, terminated, truncated, info = self.env.step(self._env_action(action))
            reward = self._to_tensor(reward) * valid
            terminated = self._to_tensor(terminated, torch.bool) & valid
            truncated = self._to_tensor(truncated, torch.bool) & valid
            buf.valid[t], buf.rewards[t] = valid, reward * cfg.reward_scale
            buf.terminated[t], buf.truncated[t] = terminated, truncated
            if not next_step:
                final_values = self._final_values(info, truncated)
                if final_values is not None:
                    buf.final_values[t] = final_values
            done = terminated | truncated
            self._ep_return += reward
            self._ep_length += valid.long()
            if bool(done.any()):
                self.episode_returns.extend(self._ep_return[done].tolist())
                self.episode_lengths.extend(self._ep_length[done].tolist())
                self._ep_return[done] = 0.0
                self._ep_length[done] = 0
            self._prev_done = done
            self._obs = self._to_tensor(obs)
        buf.last_value = self.policy.value(self._obs)
        self.num_timesteps += cfg.n_steps * self.num_envs
        return buf

    def compute_advantages(self, buf: RolloutBuffer) -> tuple[torch.Tensor, torch.Tensor]:
        """``(advantages, returns)``, both ``(T, B)``; zero on masked (reset) rows."""
        cfg = self.config
        # NEXT_STEP: the row after a truncation holds the final obs; SAME_STEP needs final_values.
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        adv, ret = compute_gae(
            buf.rewards,
            buf.values,
            buf.terminated,
            buf.truncated,
            buf.last_value,
            cfg.gamma,
            cfg.gae_lambda,
            final_values=buf.final_values if same_step else None,
        )
        mask = buf.valid.to(adv.dtype)
        # The critic still regresses to the lambda-returns; only the policy's signal is relative.
        adv = group_relative(adv, buf.valid, cfg.group_size)
        return adv * mask, ret * mask

    def update(self, buf: RolloutBuffer) -> dict[str, float]:
        """Run the PPO epochs on one buffer; returns the iteration's loss diagnostics."""
        cfg = self.config
        adv, ret = self.compute_advantages(buf)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        obs, actions = flat(buf.obs), flat(buf.actions)
        old_logp, old_values, adv, ret = (flat(x) for x in (buf.log_probs, buf.values, adv, ret))
        # Only real transitions are trained on; reset steps stay in the buffer for bootstrapping.
        rows = flat(buf.valid).nonzero().squeeze(1)
        n = rows.numel()
        stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "ent", "kl", "clip")}
        stopped = False
        self.policy.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for _ in range(cfg.n_epochs):
            perm = rows[torch.randperm(n, generator=self._generator).to(rows.device)]
            for start in range(0, n, cfg.minibatch_size):
                idx = perm[start : start + cfg.minibatch_size]
                logp, entropy, values = self.policy.evaluate_actions(obs[idx], actions[idx])
                mb_adv = adv[idx]
                if cfg.normalize_advantages and idx.numel() > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss, kl, clip_frac = ppo_clip_loss(logp, old_logp[idx], mb_adv, cfg.clip_range)
                if cfg.target_kl is not None and kl.item() > cfg.target_kl:
                    # The policy has already moved far enough from the one that collected data.
                    stopped = True
                    break
                vf_loss = value_loss(values, ret[idx], old_values[idx], cfg.clip_range_vf)
                ent = entropy.mean()
                loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * ent
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                for key, val in zip(stats, (pg_loss, vf_loss, ent, kl, clip_frac), strict=True):
                    stats[key].append(val.item())
            if stopped:
                break
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        return {
            "losses/policy_loss": mean(stats["pg"]),
            "losses/value_loss": mean(stats["vf"]),
            "losses/entropy": mean(stats["ent"]),
            "losses/approx_kl": mean(stats["kl"]),
            "losses/clip_fraction": mean(stats["clip"]),
            "losses/explained_variance": explained_variance(old_values[rows], ret[rows]),
            "losses/early_stopped": float(stopped),
            "charts/std": self.policy.log_std.detach().exp().mean().item(),
        }

    def learn(
        self,
        total_timesteps: int,
        callback: Callback | None = None,
        progress_bar: bool = True,
    ) -> PPO:
        """Train for at least ``total_timesteps`` env steps (rounded up to whole iterations).

        Can be called repeatedly; env state and counters carry over.

        Args:
            total_timesteps: env steps summed over envs (reset steps included).
            callback: ``callback(agent, metrics)`` after each iteration; returning ``False``
                stops training.
            progress_bar: show a tqdm bar.

        Returns:
            ``self``. Per-iteration metrics are appended to :attr:`history`: ``charts/
            episodic_return`` and ``charts/episodic_length`` (mean over the last 100 finished
            episodes, unscaled reward), ``losses/*``, ``time/sps``, ``time/global_step``.
        """
        if self.env is None:
            raise UnsupportedEnvError("this PPO has no env; pass one to PPO.load(path, env=...)")
        batch = self.config.n_steps * self.num_envs
        iterations = max(1, math.ceil(total_timesteps / batch))
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=iterations * batch, unit="step", desc="PPO")
        try:
            for i in range(iterations):
                if self.config.anneal_lr:
                    for g in self.optimizer.param_groups:
                        g["lr"] = g["initial_lr"] * (1.0 - i / iterations)
                start = time.perf_counter()
                buf = self.collect_rollout()
                metrics = self.update(buf)
                self.iteration += 1
                metrics.update(
                    {
                        "charts/episodic_return": float(np.mean(self.episode_returns))
                        if self.episode_returns else float("nan"),
                        "charts/episodic_length": float(np.mean(self.episode_lengths))
                        if self.episode_lengths else float("nan"),
                        "time/sps": batch / max(time.perf_counter() - start, 1e-9),
                        "time/global_step": float(self.num_timesteps),
                    }
                )  # fmt: skip
                self.history.append(metrics)
                if bar is not None:
                    bar.update(batch)
                    bar.set_postfix(ret=f"{metrics['charts/episodic_return']:.3g}")
                if callback is not None and callback(self, metrics) is False:
                    break
        finally:
            if bar is not None:
                bar.close()
        return self

    # -- inference and persistence ---------------------------------------------------------------

    def predict(
        self, observation: np.ndarray | torch.Tensor, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """SB3-style: ``(action, None)`` for one observation or a batch; see
        :meth:`ActorCritic.predict`."""
        return self.policy.predict(observation, deterministic=deterministic)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the folder ``path``: ``config.json`` (PPO config + policy spec),
        ``model.safetensors`` (policy), ``optimizer.pt`` (to resume)."""
        config = {"ppo": dataclasses.asdict(self.config), "policy_spec": self.policy.spec()}
        meta = {"num_timesteps": self.num_timesteps, "iteration": self.iteration}
        return save_checkpoint(
            path,
            config,
            self.policy,
            optimizer=self.optimizer,
            meta=meta,
            model_type=self.MODEL_TYPE,
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        env: gym.Env | gym.vector.VectorEnv | None = None,
        device: str | torch.device = "auto",
    ) -> PPO:
        """Rebuild an agent saved by :meth:`save`.

        Raises:
            SpaceMismatchError: ``env``'s observation or action shape differs from the policy's.
            MissingWeightsError, CorruptFileError: the folder is missing or damaged.
            ModelTypeError: the folder holds another model type (e.g. a bare policy: load it with
                ``ActorCritic.load``).
        """
        dev = resolve_device(device)
        ckpt = load_checkpoint(path, map_location=dev)
        stored = model_config(ckpt.config, cls.MODEL_TYPE, ckpt.path)
        config = PPOConfig.from_dict(stored["ppo"])
        policy = ActorCritic.from_spec(stored["policy_spec"])
        policy.load_state_dict(ckpt.state_dict)
        agent = cls(env, config, policy=policy, device=dev)
        if ckpt.optimizer is not None:
            # A changed parameter layout only loses Adam moments, not the policy.
            with contextlib.suppress(ValueError, KeyError):
                agent.optimizer.load_state_dict(ckpt.optimizer)
        agent.num_timesteps = int(ckpt.meta.get("num_timesteps", 0))
        agent.iteration = int(ckpt.meta.get("iteration", 0))
        return agent
