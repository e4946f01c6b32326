"""SB3 policies that read the scene through a bundle's frozen goal readout
(:class:`rla_gym.sb3.SB3GoalExtractor`): what they see, that PPO leaves the readout alone, that
the readout travels inside the policy's zip, and what they refuse (tiny bundle, CPU, seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tiny_bundle import A, K

from rla_gym.data.proprio import body_spec
from rla_gym.reward import ProgressHead
from rla_gym.reward.progress import ProgressHeadConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FIELDS = body_spec("libero").fields
P = len(FIELDS)


def _head(path: Path, shape: tuple[int, int], **kw: object) -> Path:
    """An untrained head on the tiny bundle's features, its body statistics fitted, saved."""
    torch.manual_seed(0)
    cfg = ProgressHeadConfig(num_tokens=shape[0], feature_dim=shape[1], encoder_fingerprint="x",
                             token_dim=4, hidden=16, proprio_fields=FIELDS, **kw)  # type: ignore[arg-type]  # fmt: skip
    head = ProgressHead(cfg)
    if cfg.proprio_fields:
        head.fit_body_stats(np.random.default_rng(0).normal(0.5, 0.2, (64, P)))
    head.save_pretrained(path)
    return path


def test_ppo_reads_the_goal_readout_and_leaves_it_alone(body_bundle: Path, tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    from rla_gym.sb3 import SB3GoalExtractor, SB3VecEnvAdapter, goal_policy_kwargs

    env = SB3VecEnvAdapter(num_envs=2, artifacts=str(body_bundle), flow_steps=2)
    shape = env.observation_space["features"].shape
    path = _head(tmp_path / "head", shape, target="body_goal", goal_space="effector")
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, n_epochs=1, device="cpu",
                seed=0, policy_kwargs=goal_policy_kwargs(path, net_arch=[16]))  # fmt: skip
    extractor = model.policy.features_extractor
    # goal, body in the goal's space, their gap (3 effector coordinates each), the body
    assert isinstance(extractor, SB3GoalExtractor) and extractor.features_dim == 3 * 3 + P
    frozen = {k: v.clone() for k, v in extractor.head.state_dict().items()}
    rest = [p.detach().clone() for n, p in model.policy.named_parameters() if ".head." not in n]
    model.learn(16)
    for k, v in extractor.head.state_dict().items():
        torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)
    trained = [p for n, p in model.policy.named_parameters() if ".head." not in n]
    assert any(not torch.equal(a, b) for a, b in zip(rest, trained, strict=True))
    assert not extractor.head.training  # the lens stays in eval mode when SB3 trains

    # What the policy sees is the head's: its goal read off the features, the body's place, gap.
    obs = env.reset()
    t = {k: torch.as_tensor(v) for k, v in obs.items()}
    seen = extractor(t)
    head = ProgressHead.from_pretrained(path)
    with torch.no_grad():
        goal = head.predict_goal(t["features"])
        here = head.goal_of(t["proprio"])
    torch.testing.assert_close(seen[:, :3], goal)
    torch.testing.assert_close(seen[:, 6:9], goal - here)
    torch.testing.assert_close(seen[:, 9:], t["proprio"].float())
    # another scene, another goal: it reads the features
    t2 = {**t, "features": t["features"].flip(1)}  # the same tokens elsewhere in the scene
    assert not torch.allclose(extractor(t2)[:, :3], seen[:, :3])

    # The readout travels in the zip: with the head's folder gone, the loaded policy acts alike.
    model.save(tmp_path / "ppo")
    shutil.rmtree(path)
    again = PPO.load(tmp_path / "ppo", device="cpu")
    a1 = model.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(again.predict(obs, deterministic=True)[0], a1, atol=1e-6)
    assert a1.shape == (2, K * A)


def test_the_goal_readout_refuses_what_it_cannot_read(body_bundle: Path, tmp_path: Path) -> None:
    from rla_gym.sb3 import SB3GoalExtractor, goal_policy_kwargs
    from rla_gym.sb3.adapter import SB3VecEnvAdapter

    space = SB3VecEnvAdapter(num_envs=1, artifacts=str(body_bundle)).observation_space
    shape = space["features"].shape
    with pytest.raises(FileNotFoundError, match="no progress head"):
        goal_policy_kwargs(tmp_path / "nothing")
    fraction = _head(tmp_path / "fraction", shape)
    with pytest.raises(ValueError, match="'body_goal' head"):
        SB3GoalExtractor(space, str(fraction))
    goal = _head(tmp_path / "goal", shape, target="body_goal", goal_space="effector")
    with pytest.raises(ValueError, match="features\\+proprio"):
        SB3GoalExtractor(space["features"], str(goal))  # type: ignore[arg-type]
    wide = gym.spaces.Dict(
        {"features": gym.spaces.Box(-1, 1, (shape[0], shape[1] + 1)), "proprio": space["proprio"]}
    )
    with pytest.raises(ValueError, match="reads features"):
        SB3GoalExtractor(wide, str(goal))


def test_the_planner_searches_around_an_sb3_policy_that_reads_the_body(
    bundle: Path, body_bundle: Path
) -> None:
    """A dream-trained SB3 policy (body dict in, one held action out) as the planner's base:
    shown the dreamed body, its action held for the chunk, the residual added on top."""
    from stable_baselines3 import PPO

    from rla_gym.agents import SpaceMismatchError
    from rla_gym.envs.config import RLAWorldConfig
    from rla_gym.planning import DreamPlanner, PlannerConfig
    from rla_gym.sb3 import SB3VecEnvAdapter, patch_policy_kwargs

    env = SB3VecEnvAdapter(num_envs=2, artifacts=str(body_bundle), flow_steps=2,
                           action_mode="repeat")  # fmt: skip
    kwargs = patch_policy_kwargs(features_dim=16, token_dim=8, net_arch=(16,))
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, n_epochs=1, device="cpu",
                seed=0, policy_kwargs=kwargs)  # fmt: skip
    assert model.action_space.shape == (A,)
    cfg = PlannerConfig(samples=8, iterations=1, horizon=1, residual_scale=0.2, flow_steps=2)
    planner = DreamPlanner(RLAWorldConfig(artifacts=str(body_bundle)), cfg, base_policy=model)
    assert planner.base_reads_body
    obs = env.reset()
    s, body = torch.as_tensor(obs["features"]), torch.as_tensor(obs["proprio"])
    held = model.predict(obs, deterministic=True)[0]  # (2, A)
    zero = torch.zeros(2, K * A)
    chunk = planner.executed(s, zero, body)
    np.testing.assert_allclose(chunk.numpy(), np.clip(np.tile(held, K), -1, 1), atol=1e-6)
    # The body matters to it: another body, another chunk (the policy reads it).
    assert not torch.allclose(planner.executed(s, zero, body + 1.0), chunk)
    with pytest.raises(ValueError, match="body="):
        planner.executed(s, zero)
    plan = planner.plan(obs["features"][0], demo=0, t=0, body=obs["proprio"][0], seed=0)
    base = np.tile(held[0], K)
    assert plan.action.shape == (K * A,)
    assert np.abs(plan.action - np.clip(base, -1, 1)).max() <= 0.2 + 1e-6  # within the residual
    # A dream without a body cannot show it one.
    with pytest.raises(SpaceMismatchError, match="dreams features only"):
        DreamPlanner(RLAWorldConfig(artifacts=str(bundle)), cfg, base_policy=model)


def test_a_joint_space_goal_readout_hands_over_wrapped_angle_errors(tmp_path: Path) -> None:
    """Reacher's joint-space head keeps angles as sin / cos pairs; the readout appends goal minus
    body per joint, wrapped, read from the unstandardised pairs (the error a PD loop acts on)."""
    from rla_gym.data.proprio import angle_pairs
    from rla_gym.sb3 import SB3GoalExtractor

    fields = body_spec("dmc").fields  # shoulder_sin, shoulder_cos, wrist_sin, wrist_cos, 2 vel
    assert angle_pairs(fields) == [("shoulder", 0, 1), ("wrist", 2, 3)]
    assert angle_pairs(body_spec("libero").fields) == []
    n, d = 4, 8
    proprio = gym.spaces.Box(-np.inf, np.inf, (len(fields),))
    space = gym.spaces.Dict({"features": gym.spaces.Box(-1, 1, (n, d)), "proprio": proprio})
    cfg = ProgressHeadConfig(num_tokens=n, feature_dim=d, encoder_fingerprint="x", token_dim=4,
                             hidden=16, target="body_goal", proprio_fields=fields,
                             goal_fields=fields[:4])  # fmt: skip
    head = ProgressHead(cfg)
    rng = np.random.default_rng(0)
    q = rng.uniform(-np.pi, np.pi, (256, 2))
    rows = np.stack([np.sin(q[:, 0]), np.cos(q[:, 0]), np.sin(q[:, 1]), np.cos(q[:, 1])], 1)
    head.fit_body_stats(np.concatenate([rows, rng.normal(0, 2, (256, 2))], 1))
    # Pin the goal: the last layer's bias alone decides it (shoulder 3.0 rad, wrist -1.0 rad).
    goal_q = np.array([3.0, -1.0])
    raw = torch.tensor([np.sin(goal_q[0]), np.cos(goal_q[0]), np.sin(goal_q[1]), np.cos(goal_q[1])])
    with torch.no_grad():
        head.goal[-1].weight.zero_()
        head.goal[-1].bias.copy_((raw - head.proprio_mean[:4]) / head.proprio_std[:4])
    head.save_pretrained(tmp_path / "head")
    ex = SB3GoalExtractor(space, str(tmp_path / "head"))
    assert ex.features_dim == 3 * 4 + len(fields) + 2
    body_q = np.array([[-3.0, -1.5], [0.0, 2.0]])  # shoulder across +-pi from the goal's 3.0
    body = np.concatenate([np.sin(body_q[:, :1]), np.cos(body_q[:, :1]), np.sin(body_q[:, 1:]),
                           np.cos(body_q[:, 1:]), np.zeros((2, 2))], 1)  # fmt: skip
    obs = {"features": torch.zeros(2, n, d), "proprio": torch.tensor(body, dtype=torch.float32)}
    seen = ex(obs)[:, -2:].numpy()
    want = (goal_q - body_q + np.pi) % (2 * np.pi) - np.pi  # [[6 - 2pi, 0.5], [3, -3]]
    np.testing.assert_allclose(seen, want, atol=1e-5)
    assert abs(seen[0, 0]) < 0.3  # 3.0 and -3.0 rad are 0.28 apart, not 6


def test_an_effector_goal_readout_hands_over_the_angle_errors_that_reach_its_place(
    tmp_path: Path,
) -> None:
    """Reacher's effector-goal head reads a place for the fingertip; the readout appends each
    joint's error to the nearest joint angles that put the fingertip there (inverse kinematics),
    so a policy sees what a PD loop acts on. A Panda's place has no such angles here: refused."""
    from rla_gym.data.proprio import effector_joint_error, effector_position, places_reachable
    from rla_gym.sb3 import SB3GoalExtractor

    fields = body_spec("dmc").fields
    assert places_reachable(fields) and not places_reachable(FIELDS)
    with pytest.raises(ValueError, match="shoulder and wrist"):
        effector_joint_error(FIELDS, np.zeros((1, P)), np.zeros((1, 3)))
    n, d = 4, 8
    proprio = gym.spaces.Box(-np.inf, np.inf, (len(fields),))
    space = gym.spaces.Dict({"features": gym.spaces.Box(-1, 1, (n, d)), "proprio": proprio})
    cfg = ProgressHeadConfig(num_tokens=n, feature_dim=d, encoder_fingerprint="x", token_dim=4,
                             hidden=16, target="body_goal", proprio_fields=fields,
                             goal_space="effector")  # fmt: skip
    head = ProgressHead(cfg)
    rng = np.random.default_rng(0)

    def body_of(q: np.ndarray) -> np.ndarray:
        return np.concatenate([np.sin(q[:, :1]), np.cos(q[:, :1]), np.sin(q[:, 1:]),
                               np.cos(q[:, 1:]), np.zeros((len(q), 2))], 1)  # fmt: skip

    head.fit_body_stats(body_of(rng.uniform(-np.pi, np.pi, (256, 2))))
    place = torch.tensor([0.05, -0.15])  # within reach (0 .. 0.24 m from the base)
    with torch.no_grad():
        head.goal[-1].weight.zero_()
        head.goal[-1].bias.copy_((place - head.effector_mean) / head.effector_std)
    head.save_pretrained(tmp_path / "head")
    ex = SB3GoalExtractor(space, str(tmp_path / "head"))
    assert ex.features_dim == 3 * 2 + len(fields) + 2
    body_q = rng.uniform(-2.5, 2.5, (16, 2))
    obs = {"features": torch.zeros(16, n, d), "proprio": torch.tensor(body_of(body_q)).float()}
    err = ex(obs)[:, -2:].numpy().astype(np.float64)
    # Turning each joint by its error puts the fingertip on the place read off the scene ...
    tips = effector_position(fields, body_of(body_q + err))
    np.testing.assert_allclose(tips, np.tile(place.numpy(), (16, 1)), atol=1e-4)
    # ... by the nearer of the elbow's two ways (never a turn of more than half a circle).
    assert np.abs(err).max() <= np.pi
    mirror = effector_joint_error(fields, body_of(body_q + err), place.double().numpy())
    np.testing.assert_allclose(mirror, 0.0, atol=1e-4)
