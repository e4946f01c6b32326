"""Tests of rla_gym.agents: GAE and loss maths by hand, PPO learning, autoreset masking, BC,
residual policies, persistence and input errors. CPU, one thread, well under a minute."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from rla_gym.agents import (
    PPO,
    ActorCritic,
    ActorCriticConfig,
    BCConfig,
    PPOConfig,
    SpaceMismatchError,
    UnsupportedSpaceError,
    compute_gae,
    explained_variance,
    group_relative,
    make_residual_policy,
    ppo_clip_loss,
    train_bc,
    value_loss,
)
from rla_gym.errors import RLAGymError

torch.set_num_threads(1)

SMALL = ActorCriticConfig(
    token_dim=16, feature_dim=64, mlp_hidden=(64,), actor_hidden=(64,), critic_hidden=(64,),
    residual_hidden=(32,),
)  # fmt: skip


# -- toy envs ------------------------------------------------------------------------------------


class Reach(gym.Env):
    """One-step episodes: observe a target in [-0.8, 0.8]^2, reward ``-|a - target|_1``.

    A uniform random policy scores about -1.2; the optimum is 0.
    """

    def __init__(self, patch_shape: tuple[int, int] | None = None) -> None:
        self.patch_shape = patch_shape
        shape = patch_shape or (2,)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def _obs(self) -> np.ndarray:
        if self.patch_shape is None:
            return self.target.copy()
        # Patch features: the target sits in one token, the rest is fixed clutter.
        obs = np.tile(
            np.linspace(-1, 1, self.patch_shape[1], dtype=np.float32), (self.patch_shape[0], 1)
        )
        obs[3, :2] = self.target
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-0.8, 0.8, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        reward = -float(np.abs(np.asarray(action) - self.target).sum())
        return self._obs(), reward, True, False, {}


class Counter(gym.Env):
    """Episodes of ``length`` steps with reward 1 each; obs = steps taken (terminates)."""

    def __init__(self, length: int = 3) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0, length, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t >= self.length, False, {}


class TorchReach(gym.vector.VectorEnv):
    """Native torch-batched :class:`Reach` with SAME_STEP autoreset (tensors in and out)."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 8) -> None:
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.single_action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.gen = torch.Generator()

    def _sample(self) -> torch.Tensor:
        return torch.rand(self.num_envs, 2, generator=self.gen) * 1.6 - 0.8

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.gen.manual_seed(seed)
        self.target = self._sample()
        return self.target.clone(), {}

    def step(self, action):
        assert torch.is_tensor(action)
        reward = -(action - self.target).abs().sum(-1)
        final = self.target.clone()
        self.target = self._sample()
        done = torch.ones(self.num_envs, dtype=torch.bool)
        info = {"final_obs": final, "_final_obs": done.numpy()}
        return self.target.clone(), reward, done, torch.zeros_like(done), info


class NoisyDream(gym.Env):
    """A dreamed task in miniature, with a known best action.

    Episodes of ``horizon`` chunk-steps over patch features ``(16, 8)``. Each step pays
    ``level + noise - 2 * mean|a - BEST|``: ``level`` is the start's worth (uniform in [-2, 0],
    drawn at reset), ``noise`` the dream's sampling luck (std 0.3 per step), both drawn from the
    env's seeded stream, so envs reset with one seed share them, as dreamed envs share a start
    and flow noise. The action's effect (at most 0.12 per step between a base at 0 and the best
    chunk) sits well inside that spread, as in the LIBERO dream.
    """

    BEST = np.array([0.06, -0.06] * 4, np.float32)

    def __init__(self, horizon: int = 5) -> None:
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (16, 8), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (8,), np.float32)

    def _obs(self) -> np.ndarray:
        obs = np.zeros((16, 8), np.float32)
        obs[0, 0], obs[1, 0] = self.t / self.horizon, self.level
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t, self.level = 0, float(self.np_random.uniform(-2.0, 0.0))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        gap = float(np.abs(np.asarray(action) - self.BEST).mean())
        reward = self.level + float(self.np_random.normal(0.0, 0.3)) - 2.0 * gap
        return self._obs(), reward, False, self.t >= self.horizon, {}


def reach_config(**kw) -> PPOConfig:
    base = dict(n_steps=32, minibatch_size=64, learning_rate=3e-3, gamma=0.0, policy=SMALL)
    base.update(kw)
    return PPOConfig(**base)


def eval_reach(agent: PPO, episodes: int = 100) -> float:
    env = Reach()
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        returns.append(env.step(agent.predict(obs)[0])[1])
    return float(np.mean(returns))


# -- maths ---------------------------------------------------------------------------------------


def test_gae_hand_example() -> None:
    # T=3, B=1, gamma=0.5, lam=0.5, episode terminates at t=2.
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [2.0]])
    term = torch.tensor([[False], [False], [True]])
    adv, ret = compute_gae(r, v, term, None, torch.tensor([9.0]), gamma=0.5, lam=0.5)
    d2 = 3.0 - 2.0  # terminal: no bootstrap of last_value
    d1 = 2.0 + 0.5 * 2.0 - 1.0
    d0 = 1.0 + 0.5 * 1.0 - 0.5
    a2, a1 = d2, d1 + 0.25 * d2
    a0 = d0 + 0.25 * a1
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(ret, adv + v)


def test_gae_lambda_limits() -> None:
    torch.manual_seed(0)
    r, v = torch.randn(5, 3), torch.randn(5, 3)
    term = torch.zeros(5, 3, dtype=torch.bool)
    term[-1] = True
    last = torch.randn(3)
    # lam = 1, gamma = 1: Monte-Carlo return-to-go minus the value.
    adv, ret = compute_gae(r, v, term, None, last, gamma=1.0, lam=1.0)
    mc = r.flip(0).cumsum(0).flip(0)
    torch.testing.assert_close(ret, mc)
    torch.testing.assert_close(adv, mc - v)
    # lam = 0: one-step TD errors.
    adv0, _ = compute_gae(r, v, term, None, last, gamma=0.9, lam=0.0)
    next_v = torch.cat([v[1:], last[None]])
    td = r + 0.9 * next_v * (~term) - v
    torch.testing.assert_close(adv0, td)


def test_gae_truncation_bootstraps_and_cuts() -> None:
    r = torch.tensor([[1.0], [1.0], [1.0]])
    v = torch.tensor([[0.0], [4.0], [0.0]])
    trunc = torch.tensor([[True], [False], [False]])
    term = torch.zeros(3, 1, dtype=torch.bool)
    # NEXT_STEP convention: row 1 holds the final obs, so its value (4) is bootstrapped, and the
    # advantage of row 1 does not leak into row 0.
    adv, _ = compute_gae(r, v, term, trunc, torch.tensor([0.0]), gamma=1.0, lam=1.0)
    assert adv[0, 0].item() == pytest.approx(1.0 + 4.0)
    # SAME_STEP convention: the final obs value comes from final_values.
    fv = torch.tensor([[7.0], [0.0], [0.0]])
    adv, _ = compute_gae(r, v, term, trunc, torch.tensor([0.0]), 1.0, 1.0, final_values=fv)
    assert adv[0, 0].item() == pytest.approx(1.0 + 7.0)
    # Termination never bootstraps.
    adv, _ = compute_gae(r, v, trunc, None, torch.tensor([0.0]), 1.0, 1.0, final_values=fv)
    assert adv[0, 0].item() == pytest.approx(1.0)


def test_clip_and_value_losses() -> None:
    logp_old = torch.zeros(3)
    logp_new = torch.log(torch.tensor([1.5, 0.5, 1.0]))
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, kl, frac = ppo_clip_loss(logp_new, logp_old, adv, clip=0.2)
    # min(1.5, 1.2) = 1.2 ; min(0.5, 0.8) = 0.5 ; min(-2, -2) = -2
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 2.0) / 3)
    assert frac.item() == pytest.approx(2 / 3)
    assert kl.item() > 0
    v_new, v_old, ret = torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([2.5])
    assert value_loss(v_new, ret).item() == pytest.approx(0.5 * 0.25)
    # Clipped value 1.5 is further from the target: the max picks (1.5 - 2.5)^2.
    assert value_loss(v_new, ret, v_old, clip=0.5).item() == pytest.approx(0.5)
    y = torch.tensor([1.0, 2.0, 3.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.full((3,), 2.0), y) == pytest.approx(0.0)


# -- PPO -----------------------------------------------------------------------------------------


def test_ppo_learns_reach_on_sync_vector_env() -> None:
    env = gym.vector.SyncVectorEnv([Reach for _ in range(4)])
    agent = PPO(env, reach_config(n_steps=64), device="cpu")
    before = eval_reach(agent)
    agent.learn(12_000, progress_bar=False)
    after = eval_reach(agent)
    print(f"reach: deterministic return {before:.3f} -> {after:.3f}")
    assert after > -0.25 and after > before + 0.5  # random ~ -1.2
    assert agent.history[-1]["charts/episodic_return"] > agent.history[0]["charts/episodic_return"]


def test_ppo_on_native_torch_vector_env_same_step() -> None:
    agent = PPO(TorchReach(8), reach_config(), device="cpu")
    agent.learn(8_000, progress_bar=False)
    assert eval_reach(agent) > -0.3
    # SAME_STEP: every row is a real transition.
    assert agent.collect_rollout().valid.all()


def test_next_step_reset_rows_are_masked() -> None:
    env = gym.vector.SyncVectorEnv([lambda: Counter(3) for _ in range(2)])
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    agent = PPO(env, PPOConfig(n_steps=8, gamma=1.0, gae_lambda=1.0, policy=SMALL), device="cpu")
    buf = agent.collect_rollout()
    # Episodes take rows 0-2, row 3 is the reset step, rows 4-6 the next episode, row 7 reset.
    expected_valid = torch.tensor([1, 1, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    assert torch.equal(buf.valid[:, 0], expected_valid)
    adv, ret = agent.compute_advantages(buf)
    # lam = gamma = 1 on terminated episodes: exact Monte-Carlo returns, whatever the critic says.
    torch.testing.assert_close(ret[:, 0], torch.tensor([3.0, 2, 1, 0, 3, 2, 1, 0]))
    assert (adv[~buf.valid] == 0).all()
    assert list(agent.episode_lengths) == [3, 3, 3, 3]
    assert list(agent.episode_returns) == [3.0] * 4
    # SAME_STEP gives the same returns without any masked row.
    env2 = gym.vector.SyncVectorEnv(
        [lambda: Counter(3) for _ in range(2)], autoreset_mode=AutoresetMode.SAME_STEP
    )
    agent2 = PPO(env2, PPOConfig(n_steps=6, gamma=1.0, gae_lambda=1.0, policy=SMALL), device="cpu")
    buf2 = agent2.collect_rollout()
    assert buf2.valid.all()
    torch.testing.assert_close(
        agent2.compute_advantages(buf2)[1][:, 0], torch.tensor([3.0, 2, 1] * 2)
    )


def test_single_env_and_patch_observations() -> None:
    agent = PPO(gym.make("Pendulum-v1"), PPOConfig(n_steps=64, policy=SMALL), device="cpu")
    agent.learn(64, progress_bar=False)
    assert agent.predict(np.zeros(3, np.float32))[0].shape == (1,)
    for extractor in ("conv", "attention"):
        cfg = reach_config(policy=ActorCriticConfig(**{**SMALL.__dict__, "extractor": extractor}))
        env = gym.vector.SyncVectorEnv([lambda: Reach(patch_shape=(16, 8)) for _ in range(2)])
        agent = PPO(env, cfg, device="cpu")
        agent.learn(128, progress_bar=False)
        assert agent.policy.extractor.kind == extractor
        action, state = agent.predict(np.zeros((5, 16, 8), np.float32))
        assert action.shape == (5, 2) and state is None and np.abs(action).max() <= 1


def test_save_load_identical_and_mismatch(tmp_path) -> None:
    agent = PPO(gym.vector.SyncVectorEnv([Reach, Reach]), reach_config(), device="cpu")
    agent.learn(256, progress_bar=False)
    agent.save(tmp_path / "ppo")
    obs = np.random.default_rng(0).uniform(-1, 1, (32, 2)).astype(np.float32)
    loaded = PPO.load(tmp_path / "ppo", device="cpu")
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    assert loaded.config == agent.config and loaded.num_timesteps == agent.num_timesteps
    PPO.load(tmp_path / "ppo", env=Reach(), device="cpu").learn(64, progress_bar=False)
    with pytest.raises(SpaceMismatchError, match="observations of shape"):
        PPO.load(tmp_path / "ppo", env=Reach(patch_shape=(16, 8)), device="cpu")
    # The policy alone round-trips too.
    agent.policy.save(tmp_path / "policy")
    np.testing.assert_array_equal(
        ActorCritic.load(tmp_path / "policy").predict(obs)[0], agent.predict(obs)[0]
    )


def test_non_box_action_space_is_refused() -> None:
    env = gym.make("CartPole-v1")
    with pytest.raises(UnsupportedSpaceError, match="Box action space") as err:
        PPO(env, device="cpu")
    assert isinstance(err.value, RLAGymError)


# -- BC and residual -----------------------------------------------------------------------------


def test_bc_fits_linear_expert() -> None:
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (2000, 4)).astype(np.float32)
    w = rng.normal(0, 0.4, (4, 3)).astype(np.float32)
    actions = np.clip(obs @ w, -1, 1)
    policy = ActorCritic((4,), 3, SMALL)
    from rla_gym.agents import BehaviourCloning

    bc = BehaviourCloning(policy, BCConfig(epochs=15, batch_size=64, learning_rate=3e-3), "cpu")
    bc.fit(obs, actions)
    assert bc.val_losses[-1] < 0.1 * bc.val_losses[0] or min(bc.val_losses) < 1e-3
    test = rng.uniform(-1, 1, (200, 4)).astype(np.float32)
    pred, _ = policy.predict(test)
    assert np.abs(pred - np.clip(test @ w, -1, 1)).mean() < 0.05
    with pytest.raises(SpaceMismatchError):
        train_bc(policy, obs[:, :3], actions, BCConfig(epochs=1), "cpu")


def test_group_relative_hand_example() -> None:
    adv = torch.tensor([[1.0, 3.0, 5.0, 10.0], [2.0, 4.0, 7.0, 7.0]])
    valid = torch.tensor([[True, True, True, True], [True, False, True, True]])
    out = group_relative(adv, valid, 2)
    # Each member against its peer's advantage; a member whose peer is masked keeps its own.
    expected = torch.tensor([[1.0 - 3.0, 3.0 - 1.0, 5.0 - 10.0, 10.0 - 5.0], [2.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(group_relative(adv, valid, 1), adv)
    with pytest.raises(ValueError, match="groups of 3"):
        group_relative(adv, valid, 3)


def test_group_members_share_start_and_noise() -> None:
    env = gym.vector.SyncVectorEnv([NoisyDream for _ in range(4)])
    agent = PPO(env, PPOConfig(n_steps=12, group_size=2, policy=SMALL), device="cpu")
    buf = agent.collect_rollout()  # 12 steps: two episodes of 5 and the autoreset between
    # Same seed within a group: same start and same noise, so equal actions would earn equal
    # rewards; the rewards differ only by what the actions did (at most 2 * |a - a'|).
    obs = buf.obs.reshape(12, 2, 2, 16, 8)
    torch.testing.assert_close(obs[:, :, 0], obs[:, :, 1])
    assert not torch.equal(obs[:, 0, 0], obs[:, 1, 0])
    gap = (buf.rewards[:, 0] - buf.rewards[:, 1]).abs()
    bound = 2 * (buf.actions[:, 0].clamp(-1, 1) - buf.actions[:, 1].clamp(-1, 1)).abs().mean(-1)
    assert (gap <= bound + 1e-5).all()
    with pytest.raises(ValueError, match="does not divide"):
        PPO(gym.vector.SyncVectorEnv([NoisyDream for _ in range(3)]), PPOConfig(group_size=2))


def test_residual_ppo_climbs_a_noisy_dream_with_groups() -> None:
    """The dream's regime: the action's effect is small against the start's worth and the flow
    noise, and the critic cannot see the noise. Residual PPO with groups of common random
    numbers must raise the paired deterministic return and move towards the known best chunk."""
    torch.manual_seed(0)
    base = ActorCritic((16, 8), 8, SMALL)
    with torch.no_grad():  # a base at exactly 0: the best chunk is 0.06 away in every dimension
        base.actor_mean[-1].weight.zero_()
        base.actor_mean[-1].bias.zero_()

    def paired_return(policy: ActorCritic) -> float:
        env, total = NoisyDream(), 0.0
        for i in range(40):
            obs, _ = env.reset(seed=50_000 + i)
            for _ in range(env.horizon):
                obs, r, *_ = env.step(policy.predict(obs)[0])
                total += r
        return total / 40

    cfg = PPOConfig.wmrl(
        n_steps=10, minibatch_size=160, learning_rate=1e-3, critic_learning_rate=1e-3,
        group_size=8, policy=SMALL,
    )  # fmt: skip
    env = gym.vector.SyncVectorEnv([NoisyDream for _ in range(32)])
    agent = PPO(env, cfg, policy=make_residual_policy(base, scale=0.1), device="cpu")
    agent.learn(32 * 10 * 25, progress_bar=False)
    before, after = paired_return(base), paired_return(agent.policy)
    residual = agent.policy.predict(np.zeros((16, 8), np.float32))[0]
    cos = float(
        residual @ NoisyDream.BEST / np.linalg.norm(residual) / np.linalg.norm(NoisyDream.BEST)
    )
    print(f"noisy dream: paired return {before:.3f} -> {after:.3f}; cos to best {cos:.2f}")
    # At most 5 steps * 2 * 0.06 = 0.6 to gain; ask for half of it.
    assert after > before + 0.3
    assert cos > 0.8


def test_residual_policy_starts_at_base_and_trains_only_residual() -> None:
    base = ActorCritic((16, 8), 2, SMALL)
    residual = make_residual_policy(base, scale=0.1)
    obs = torch.randn(10, 16, 8)
    with torch.no_grad():
        assert torch.equal(residual.mean_action(obs), base.mean_action(obs))
    np.testing.assert_array_equal(residual.predict(obs.numpy())[0], base.predict(obs.numpy())[0])
    trainable = {n for n, p in residual.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("extractor.", "actor_mean.")) for n in trainable)
    assert any(n.startswith("residual.") for n in trainable) and "log_std" in trainable
    env = gym.vector.SyncVectorEnv([lambda: Reach(patch_shape=(16, 8)) for _ in range(2)])
    frozen = {k: v.clone() for k, v in residual.state_dict().items() if k.startswith("actor_mean")}
    agent = PPO(env, reach_config(), policy=residual, device="cpu").learn(128, progress_bar=False)
    for k, v in frozen.items():
        assert torch.equal(agent.policy.state_dict()[k], v)
    delta = agent.policy.mean_action(obs) - base.mean_action(obs)
    assert 0 < delta.abs().max().item() <= 0.1 + 1e-6
