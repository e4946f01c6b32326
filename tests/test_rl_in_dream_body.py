"""SB3 PPO in a dream that shows the robot's body, then in reality with the real body:
``benchmarks/rl_in_dream_reacher.py``'s PPO arms on the tiny body bundle, and the SB3 policy
seam of the real evaluation (tiny bundles, CPU, ~15 s)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from bench_script import load_benchmark
from tiny_bundle import A, make_env

from rla_gym.cli.evaluate import SB3SavedPolicy
from rla_gym.envs.body import FEATURES, PROPRIO

pytest.importorskip("stable_baselines3")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A few PPO updates of 2 dreamed envs x 8 steps: enough to train and save, not to learn.
TINY = {"budget_min": 0.01, "dream_envs": 2, "n_steps": 8, "batch_size": 16, "n_epochs": 1,
        "flow_steps": 2}  # fmt: skip


def test_dream_arm_trains_multi_input_ppo_on_the_body_and_acts_on_real_style_observations(
    body_bundle: Path, bundle: Path, tmp_path: Path
) -> None:
    from stable_baselines3.common.policies import MultiInputActorCriticPolicy

    bench = load_benchmark("rl_in_dream_reacher")
    man = json.loads((body_bundle / "manifest.json").read_text())
    args = bench.Args(artifacts=str(body_bundle), runs=tmp_path, **TINY)
    body = bench.arm_obs_mode(args, body_bundle)
    assert body == "features+proprio"  # auto on a bundle that dreams the body
    record = bench.train_arm("dream body", args, body_bundle, man, body)
    assert record["obs_mode"] == body and record["timesteps"] > 0

    # What evaluate_arm's workers load; feature_worker shows the real body when it reads it.
    policy = SB3SavedPolicy(str(bench.arm_dir(args, man, "dream body") / "ppo.zip"))()
    assert policy.reads_body and isinstance(policy.model.policy, MultiInputActorCriticPolicy)
    env = make_env(body_bundle)  # one env's observation, unbatched, as the real env gives it
    obs, _ = env.reset(seed=0)
    env.close()
    assert set(obs) == {FEATURES, PROPRIO}
    action = policy({FEATURES: obs[FEATURES], PROPRIO: obs[PROPRIO]})
    assert action.shape == (A,) and np.all(np.abs(action) <= 1)  # held K steps (repeat mode)
    with pytest.raises(ValueError, match=r"features only; evaluate it with obs_mode='features"):
        policy(obs[FEATURES])
    with pytest.raises(ValueError, match="another simulator's robot"):
        policy({FEATURES: obs[FEATURES], PROPRIO: obs[PROPRIO][:6]})

    # --obs-mode patch: the same bundle, the body dreamed but not shown to the policy.
    patch = dataclasses.replace(args, obs_mode="patch")
    assert bench.arm_obs_mode(patch, body_bundle) == "patch"
    with pytest.raises(ValueError, match=r"obs_mode='features\+proprio' there, 'patch' here"):
        bench.train_arm("dream body", patch, body_bundle, man, "patch")  # the kept model
    # Another reward or other starts are another model too, not the kept one relabelled.
    for option in ({"reward_mode": "progress"}, {"reset_starts": str(bundle.parent / "data")}):
        with pytest.raises(ValueError, match=f"{next(iter(option))}=None there"):
            bench.train_arm("dream body", dataclasses.replace(args, **option), body_bundle, man,
                            body)  # fmt: skip
    with pytest.raises(ValueError, match="flow_steps=2 there, 3 here"):  # a coarser dream
        bench.train_arm("dream body", dataclasses.replace(args, flow_steps=3), body_bundle, man,
                        body)  # fmt: skip
    assert bench.train_arm("dream patch", patch, body_bundle, man, "patch")["obs_mode"] == "patch"
    features_only = SB3SavedPolicy(str(bench.arm_dir(args, man, "dream patch") / "ppo.zip"))()
    assert not features_only.reads_body
    assert features_only(obs[FEATURES]).shape == (A,)
    with pytest.raises(ValueError, match="evaluate it with obs_mode='patch'"):
        features_only(obs)

    # A bundle whose world model dreams features only cannot show a body (its bank has some).
    shown = dataclasses.replace(args, artifacts=str(bundle), obs_mode="features+proprio")
    assert bench.arm_obs_mode(dataclasses.replace(shown, obs_mode="auto"), bundle) == "patch"
    with pytest.raises(ValueError, match="dreams features only"):
        bench.arm_obs_mode(shown, bundle)


def test_rl_in_dream_refuses_the_shipped_result_file_for_another_bundle(
    body_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_benchmark("rl_in_dream_reacher")
    man = json.loads((body_bundle / "manifest.json").read_text())
    monkeypatch.chdir(tmp_path)
    args = bench.Args(artifacts=str(body_bundle))
    assert bench.result_file(args, man) == bench.DEFAULT_OUT  # none shipped yet
    bench.DEFAULT_OUT.parent.mkdir(parents=True)
    bench.DEFAULT_OUT.write_text(json.dumps({"bundle_created_utc": "2000-01-01T00:00:00+00:00"}))
    with pytest.raises(ValueError, match="pass its own --out"):
        bench.main(dataclasses.replace(args, arms=("dream",)))
    own = tmp_path / "body.json"
    assert bench.result_file(dataclasses.replace(args, out=own), man) == own
    bench.DEFAULT_OUT.write_text(json.dumps({"bundle_created_utc": man["created_utc"]}))
    assert bench.result_file(args, man) == bench.DEFAULT_OUT
    # The embedded bundle, rebuilt, runs into its own shipped file (older rows: 'superseded').
    bench.DEFAULT_OUT.write_text(json.dumps({"bundle_created_utc": "2000-01-01T00:00:00+00:00"}))
    assert bench.result_file(bench.Args(), man) == bench.DEFAULT_OUT
    # A planner around another arm's policy names an arm of the file that saved one.
    for name in ("bc+ppo x", "dream x"):  # neither run: no row, no saved policy
        with pytest.raises(ValueError, match="is not a bc\\+ppo or dream arm with a saved policy"):
            bench.main(dataclasses.replace(args, arms=("planner",), planner_base=name, out=own))
    # Another head's goal readout is an option of the goal-input policy only: refused up front.
    with pytest.raises(ValueError, match="--goal-head names the goal readout"):
        bench.main(dataclasses.replace(args, arms=("dream",), goal_head="x", out=own))


@pytest.mark.sim
def test_rla_gym_eval_shows_a_body_policy_the_real_body(tmp_path: Path) -> None:
    """A ``MultiInputPolicy`` on ``{"features", "proprio"}`` evaluated in real reacher (``tiny``
    encoder, 32 px): the real env gives it the real body vector (``SB3FeaturePolicy.reads_body``,
    the seam the dream planner uses)."""
    pytest.importorskip("dm_control")
    from stable_baselines3 import PPO

    from rla_gym.cli.main import main
    from rla_gym.envs.real import RealFeatureEnv
    from rla_gym.sb3 import patch_policy_kwargs

    env = RealFeatureEnv(sim="dmc", encoder="tiny", resolution=32, obs_mode="features+proprio")
    kwargs = patch_policy_kwargs(features_dim=16, token_dim=8, net_arch=(16,))
    PPO("MultiInputPolicy", env, policy_kwargs=kwargs, device="cpu").save(tmp_path / "ppo.zip")
    env.close()
    out = tmp_path / "eval.json"
    argv = ["eval", "--sim", "dmc", "--encoder", "tiny", "--resolution", "32", "--episodes", "1",
            "--workers", "1", "--max-steps", "16", "--no-progress",
            "--policy", str(tmp_path / "ppo.zip"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["episodes"] == 1 and report["policy"]["observation_shape"] == [4, 16]
