"""Behaviour cloning of an :class:`ActorCritic` (optionally as a world action model that also
learns from action-free videos), and the residual wrapper PPO fine-tunes.

The paper's WMRL recipe (§8.2) starts RL from a BC policy: the base is frozen and a zero-initialised
residual head adds at most ``scale`` to each action, so RL starts exactly at the BC behaviour.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from rla_gym.agents.config import BCConfig
from rla_gym.agents.networks import ActorCritic, Observation, SpaceMismatchError, as_float_tensor
from rla_gym.data.proprio import FEATURES, PROPRIO
from rla_gym.utils.device import resolve_device

__all__ = ["BehaviourCloning", "make_residual_policy", "train_bc"]


class BehaviourCloning:
    """Supervised fit of a policy's mean action (or Gaussian likelihood) to demonstrations,
    optionally with an auxiliary latent head through which action-free videos train the extractor.

    World action model (paper §7): pass :meth:`fit` a latent target for every row (e.g. the frozen
    RLA encoder's ``z`` of ``(s_t, s_{t+K})``) and mark the rows of action-free videos with ``nan``
    actions. A linear head on the extractor features then regresses the normalised latent on every
    row, while the action loss sees labelled rows only; each step draws a minibatch of labelled rows
    and one of the same size of action-free rows. The head belongs to the trainer, not the policy:
    the trained policy is a plain :class:`ActorCritic` whose inference costs what plain BC costs.

    Args:
        policy: the policy to train in place (its critic is not touched).
        config: hyper-parameters.
        device: where the minibatches are computed; data stays on the host until sampled, so
            large feature datasets ``(M, N, D)`` need not fit on the device.

    Attributes:
        train_losses: mean training action loss per epoch.
        latent_losses: mean latent-head loss per epoch (empty without latents).
        val_losses: validation action loss per epoch (empty without a validation split).
        best_epoch: epoch whose weights were restored (the last one without validation).
        latent_head: the trained ``nn.Linear(feature_dim, L)`` (``None`` without latents); it
            predicts ``(z - latent_mean) / latent_std``.
        latent_mean: ``(L,)`` mean of the latent targets over the training rows.
        latent_std: ``(L,)`` their standard deviation.
    """

    def __init__(
        self,
        policy: ActorCritic,
        config: BCConfig | None = None,
        device: str | torch.device = "auto",
    ) -> None:
        self.policy = policy
        self.config = config or BCConfig()
        self.device = resolve_device(device)
        self.train_losses: list[float] = []
        self.latent_losses: list[float] = []
        self.val_losses: list[float] = []
        self.best_epoch = -1
        self.latent_head: nn.Linear | None = None
        self.latent_mean: torch.Tensor | None = None
        self.latent_std: torch.Tensor | None = None
        self._body: torch.Tensor | None = None

    def _action_loss(self, feat: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean = self.policy.mean_from_features(feat)
        if self.config.loss == "mse":
            return (mean - actions).pow(2).mean()
        dist = Normal(mean, self.policy.log_std.exp().expand_as(mean))
        return -dist.log_prob(actions).sum(-1).mean()

    def _loss(self, obs: Observation, actions: torch.Tensor) -> torch.Tensor:
        return self._action_loss(self.policy.encode(obs), actions)

    def _rows(self, obs: torch.Tensor, rows: torch.Tensor) -> Observation:
        """The policy's input for ``rows`` on the device: features, and the body if it reads it."""
        feats = obs[rows].to(self.device, torch.float32)
        if self._body is None:
            return feats
        return {FEATURES: feats, PROPRIO: self._body[rows].to(self.device)}

    def fit(
        self,
        observations: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        latents: np.ndarray | torch.Tensor | None = None,
        bodies: np.ndarray | torch.Tensor | None = None,
    ) -> ActorCritic:
        """Train; restores the weights of the best validation epoch.

        Args:
            observations: ``(M, *obs_shape)``. float16 data stays float16 on the host and is
                converted per minibatch.
            actions: ``(M, A)`` or ``(M, K, A)`` chunks (flattened); all-``nan`` rows are
                action-free (video frames) and never enter the action loss.
            latents: optional ``(M, L)`` or ``(M, K, d)`` latent targets of every row; trains
                the latent head on labelled and action-free rows alike.
            bodies: ``(M, P)`` the robot's body vector at every row, for a policy that reads it
                (``config.body_dim = P``); its standardisation is set from the training rows.

        Returns:
            The trained policy (the same object).

        Raises:
            SpaceMismatchError: shapes do not match the policy or each other, or ``bodies`` are
                missing for a policy that reads the body (or given to one that does not).
            ValueError: a row mixes ``nan`` and finite actions, latents are not finite, or there
                is nothing to learn from.
        """
        cfg, policy = self.config, self.policy
        obs = _host_tensor(observations)
        act = as_float_tensor(actions)
        m = obs.shape[0]
        act = act.reshape(act.shape[0], -1)
        if tuple(obs.shape[1:]) != policy.observation_shape or act.shape != (m, policy.action_dim):
            raise SpaceMismatchError(
                f"BC data has observations {tuple(obs.shape)} and actions {tuple(act.shape)}, but "
                f"the policy expects (M, {', '.join(map(str, policy.observation_shape))}) and "
                f"(M, {policy.action_dim})"
            )
        p = policy.config.body_dim
        if (bodies is None) != (p == 0):
            raise SpaceMismatchError(
                f"the policy reads the robot's body (body_dim={p}): pass bodies (M, {p})"
                if p
                else "bodies given, but the policy reads features only (config.body_dim = 0)"
            )
        self._body = None if bodies is None else as_float_tensor(bodies).reshape(m, -1)
        if self._body is not None and (self._body.shape[1] != p or not self._body.isfinite().all()):
            raise SpaceMismatchError(
                f"bodies must be finite (M={m}, P={p}), got {tuple(np.shape(bodies))}"
            )
        finite = torch.isfinite(act)
        has_action = finite.all(1)
        if (finite.any(1) & ~has_action).any():
            raise ValueError(
                "each action row must be all finite (labelled) or all nan (action-free video); "
                "some rows mix both"
            )
        labelled = has_action.nonzero().squeeze(1)
        video = (~has_action).nonzero().squeeze(1)
        z = None if latents is None else as_float_tensor(latents)
        if z is not None:
            if z.shape[0] != m:
                raise SpaceMismatchError(
                    f"BC data has {m} observation rows but {z.shape[0]} latent rows; pass one "
                    f"latent target per row"
                )
            z = z.reshape(m, -1)
            if not torch.isfinite(z).all():
                raise ValueError("latent targets contain nan or inf")
        gen = torch.Generator().manual_seed(cfg.seed)
        perm = labelled[torch.randperm(len(labelled), generator=gen)]
        n_val = round(len(labelled) * cfg.val_fraction) if len(labelled) > 1 else 0
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        # One epoch is one pass over the labelled training rows (or over the videos if there are
        # none); action-free rows ride along, one minibatch of them per labelled minibatch.
        drive = train_idx if len(train_idx) or z is None else video
        if not len(drive):
            raise ValueError(
                f"nothing to train on: {len(labelled)} labelled rows ({n_val} held out for "
                f"validation) and {len(video)} action-free rows"
                + ("" if z is not None else "; pass latents to learn from action-free rows")
            )
        videos = _Cycler(video, cfg.seed + 1) if z is not None and drive is train_idx else None

        # Input statistics (body, latent) come from every row but the held-out labelled ones.
        keep = torch.ones(m, dtype=torch.bool)
        keep[val_idx] = False
        if self._body is not None:
            policy.set_body_stats(self._body[keep].mean(0), self._body[keep].std(0))
        policy.to(self.device)
        params = [
            p for p in policy.actor_parameters() if p is not policy.log_std or cfg.loss == "nll"
        ]
        if z is not None:
            self.latent_mean, self.latent_std = z[keep].mean(0), z[keep].std(0).clamp_min(1e-6)
            z = (z - self.latent_mean) / self.latent_std
            self.latent_head = nn.Linear(policy.extractor.feature_dim, z.shape[1]).to(self.device)
            params = params + list(self.latent_head.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(drive) / cfg.batch_size)
        total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total))
        best, best_state, bad, step, epoch = float("inf"), None, 0, 0, 0
        while step < total:
            policy.train()
            order = drive[torch.randperm(len(drive), generator=gen)]
            sums = {"action": 0.0, "latent": 0.0, "action_rows": 0, "latent_rows": 0}
            for start in range(0, len(order), cfg.batch_size):
                if step == total:
                    break
                idx = order[start : start + cfg.batch_size]
                lab, vid = (idx, idx[:0]) if drive is train_idx else (idx[:0], idx)
                if videos is not None:
                    vid = videos.take(len(lab))
                loss = self._step_loss(obs, act, z, lab, vid, sums)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                step += 1
            if sums["action_rows"]:
                self.train_losses.append(sums["action"] / sums["action_rows"])
            if sums["latent_rows"]:
                self.latent_losses.append(sums["latent"] / sums["latent_rows"])
            epoch += 1
            if n_val == 0:
                self.best_epoch = epoch - 1
                continue
            val = self.evaluate(obs[val_idx], act[val_idx],
                                None if self._body is None else self._body[val_idx])  # fmt: skip
            self.val_losses.append(val)
            if val < best:
                best, bad, self.best_epoch = val, 0, epoch - 1
                best_state = copy.deepcopy(policy.state_dict())
                if self.latent_head is not None:
                    best_state["latent_head"] = copy.deepcopy(self.latent_head.state_dict())
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            head_state = best_state.pop("latent_head", None)
            policy.load_state_dict(best_state)
            if self.latent_head is not None and head_state is not None:
                self.latent_head.load_state_dict(head_state)
        policy.eval()
        return policy

    def _step_loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        z: torch.Tensor | None,
        lab: torch.Tensor,
        vid: torch.Tensor,
        sums: dict[str, float],
    ) -> torch.Tensor:
        """Loss of one step on labelled rows ``lab`` and action-free rows ``vid``; one extractor
        pass serves both heads. Accumulates the per-head sums for the epoch means."""
        rows = torch.cat([lab, vid]) if len(vid) else lab
        feat = self.policy.encode(self._rows(obs, rows))
        loss = feat.new_zeros(())
        if len(lab):
            action_loss = self._action_loss(feat[: len(lab)], act[lab].to(self.device))
            loss = loss + action_loss
            sums["action"] += action_loss.item() * len(lab)
            sums["action_rows"] += len(lab)
        if z is not None and self.latent_head is not None:
            latent_loss = (self.latent_head(feat) - z[rows].to(self.device)).pow(2).mean()
            loss = loss + self.config.latent_weight * latent_loss
            sums["latent"] += latent_loss.item() * len(rows)
            sums["latent_rows"] += len(rows)
        return loss

    @torch.no_grad()
    def evaluate(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        bodies: torch.Tensor | None = None,
    ) -> float:
        """Mean action loss of ``observations (M, *obs_shape)``, ``actions (M, A)`` (and
        ``bodies (M, P)`` for a policy that reads the body), in batches."""
        self.policy.eval()
        total, m = 0.0, observations.shape[0]
        for start in range(0, m, 1024):
            o: Observation = observations[start : start + 1024].to(self.device, torch.float32)
            if bodies is not None:
                o = {FEATURES: o, PROPRIO: bodies[start : start + 1024].to(self.device)}
            a = actions[start : start + 1024].to(self.device)
            total += float(self._loss(o, a)) * a.shape[0]
        return total / max(1, m)


class _Cycler:
    """Endless minibatches of the indices ``idx``, reshuffled after every pass, with their own
    generator so that drawing them leaves the labelled minibatch order untouched."""

    def __init__(self, idx: torch.Tensor, seed: int) -> None:
        self.idx, self.gen = idx, torch.Generator().manual_seed(seed)
        self.order, self.pos = idx[:0], 0

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` indices (empty if there are none)."""
        out = [self.idx[:0]]
        while n > 0 and len(self.idx):
            if self.pos == len(self.order):
                self.order = self.idx[torch.randperm(len(self.idx), generator=self.gen)]
                self.pos = 0
            k = min(n, len(self.order) - self.pos)
            out.append(self.order[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return torch.cat(out)


def _host_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observations as a tensor without copying float16/float32 arrays (minibatches are cast)."""
    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    return t if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else t.float()


def train_bc(
    policy: ActorCritic,
    observations: np.ndarray | torch.Tensor,
    actions: np.ndarray | torch.Tensor,
    config: BCConfig | None = None,
    device: str | torch.device = "auto",
    latents: np.ndarray | torch.Tensor | None = None,
    bodies: np.ndarray | torch.Tensor | None = None,
) -> ActorCritic:
    """Functional form of :class:`BehaviourCloning`: fit ``policy`` in place and return it.

    Args:
        policy: policy to train.
        observations: ``(M, *obs_shape)``.
        actions: ``(M, A)`` or ``(M, K, A)`` demonstration actions, in the policy's action space;
            all-``nan`` rows are action-free.
        config: hyper-parameters.
        device: compute device.
        latents: optional ``(M, L)`` latent targets for the auxiliary head (world action model).
        bodies: ``(M, P)`` body vectors, for a policy that reads the body.
    """
    return BehaviourCloning(policy, config, device).fit(observations, actions, latents, bodies)


def make_residual_policy(
    base_policy: ActorCritic, scale: float = 0.1, log_std: float | None = None
) -> ActorCritic:
    """A copy of ``base_policy`` with its extractor and mean head frozen and a residual head added.

    ``mean = base_mean + scale * tanh(residual(features))``; the residual's last layer is zero, so
    the new policy's mean equals the base's exactly until PPO updates it. PPO then trains only the
    residual head, the log-std and the critic.

    Args:
        base_policy: e.g. a BC policy (left unchanged).
        scale: largest change the residual can make to each action component (paper: 0.1).
        log_std: initial log-std of the exploration noise. The default ``log(scale * ln 2)`` matches
            the paper's ``scale * softplus(0)``, so exploration is on the residual's scale rather
            than the base's (often untrained) log-std.

    Returns:
        A new :class:`ActorCritic` in residual mode.
    """
    if base_policy.config.residual:
        raise ValueError("base_policy is already residual; pass its own base instead")
    config = dataclasses.replace(base_policy.config, residual=True, residual_scale=float(scale))
    policy = ActorCritic(
        base_policy.observation_shape,
        base_policy.action_dim,
        config,
        action_low=base_policy.action_low.cpu(),
        action_high=base_policy.action_high.cpu(),
    )
    missing, unexpected = policy.load_state_dict(base_policy.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("residual.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        policy.log_std.fill_(math.log(scale * math.log(2.0)) if log_std is None else log_std)
    return policy.to(base_policy.log_std.device)
