"""What is built on a dreamed bundle: SB3 through the adapter, the WMRL pipeline (residual PPO
in the dream), a progress head shipped into a bundle, a world model with history (CPU, tiny
bundle of ``tests/tiny_bundle.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_bundle import A, K, bundle_config, make_env

from rla_gym.envs.artifacts import load_artifacts
from rla_gym.errors import EncoderMismatchError
from rla_gym.pipelines.build_bundle import build_bundle
from rla_gym.utils.io import load_json, save_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("action_mode", ["chunk", "repeat"])
def test_sb3_adapter_ppo(bundle: Path, action_mode: str) -> None:
    from stable_baselines3 import PPO

    from rla_gym.sb3 import SB3VecEnvAdapter

    env = SB3VecEnvAdapter(
        num_envs=4,
        artifacts=str(bundle),
        flow_steps=2,
        max_episode_steps=3,
        action_mode=action_mode,
    )
    size = K * A if action_mode == "chunk" else A
    assert env.action_space.shape == (size,)
    env.seed(0)
    obs = env.reset()
    assert obs.shape == (4, 4, 16)
    for _ in range(3):
        obs, _, done, infos = env.step(np.zeros((4, size), np.float32))
    assert done.all() and infos[0]["TimeLimit.truncated"]
    assert infos[0]["terminal_observation"].shape == (4, 16)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        policy_kwargs={"net_arch": [16]},
        seed=0,
    )
    model.learn(64)


def test_sb3_group_relative_advantages(bundle: Path) -> None:
    from stable_baselines3 import PPO

    from rla_gym.sb3 import GroupRelativeAdvantages, SB3VecEnvAdapter

    env = SB3VecEnvAdapter(num_envs=4, group_size=2, artifacts=str(bundle), flow_steps=1)
    assert env.seed(7) == [7, 7, 8, 8]
    obs = env.reset()
    np.testing.assert_array_equal(obs[0], obs[1])
    assert not np.array_equal(obs[1], obs[2])
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [16]})  # fmt: skip
    model.learn(32, callback=GroupRelativeAdvantages(2))
    adv = model.rollout_buffer.advantages.reshape(8, 2, 2)
    # Leave-one-out within pairs: each member's advantage is minus its partner's.
    np.testing.assert_allclose(adv.sum(-1), 0.0, atol=1e-6)
    assert np.abs(adv).max() > 0
    with pytest.raises(ValueError, match="same group_size"):
        model.learn(32, callback=GroupRelativeAdvantages(4))
    with pytest.raises(ValueError, match="divide num_envs"):
        SB3VecEnvAdapter(num_envs=3, group_size=2, artifacts=str(bundle))


def test_sb3_adapter_attr_and_method_semantics(bundle: Path) -> None:
    """One value per requested index; shared state is changed or called once, for all envs."""
    from rla_gym.sb3 import SB3VecEnvAdapter

    env = SB3VecEnvAdapter(num_envs=3, artifacts=str(bundle), flow_steps=1)
    assert env.get_attr("max_episode_steps") == [env.venv.max_episode_steps] * 3
    assert len(env.get_attr("num_envs", indices=[0, 2])) == 2
    env.set_attr("max_episode_steps", 2)
    assert env.venv.max_episode_steps == 2
    with pytest.raises(ValueError, match="share one batched"):
        env.set_attr("max_episode_steps", 5, indices=[1])
    calls = []
    env.venv.count_me = lambda x: calls.append(x) or x + 1  # type: ignore[attr-defined]
    assert env.env_method("count_me", 4) == [5, 5, 5] and calls == [4]  # called once
    with pytest.raises(ValueError, match="indices=None"):
        env.env_method("count_me", 1, indices=0)
    assert env.env_is_wrapped(object, indices=[0, 1]) == [False, False]
    env.seed(3)
    env.reset()
    for _ in range(2):
        _, _, done, _ = env.step(np.zeros((3, *env.action_space.shape), np.float32))
    assert done.all()  # the set_attr above reached the batch's truncation


def test_wmrl_pipeline_in_dream_resumes(bundle: Path, tmp_path: Path) -> None:
    """BC from the dataset -> bundle with policy -> residual PPO in the dream -> imagined eval."""
    from rla_gym.pipelines.wmrl import (
        MissingPolicyError,
        ResumeMismatchError,
        WMRLConfig,
        run_wmrl,
    )
    from rla_gym.pipelines.world_action import TrainBCConfig, train_bc_from_dataset

    root = bundle.parent
    with pytest.raises(MissingPolicyError, match="--bc-data"):
        run_wmrl(WMRLConfig(artifacts=str(bundle), out=tmp_path / "none", progress=False))
    bc = tmp_path / "bc"
    train_bc_from_dataset(
        TrainBCConfig(data=root / "data", out=bc, encoder="tiny", chunk=K, steps=20, device="cpu")
    )
    with_policy = build_bundle(
        bundle_config(
            root, out=tmp_path / "bundle", policy=bc, weights_dtype="int8", reset_from="references"
        )
    )
    man = load_artifacts(with_policy).manifest
    assert man["weights"]["dtype"] == man["policy"]["dtype"] == "int8"
    assert man["weights"]["prediction_rel_error"] < 0.2
    assert man["reset"]["episodes"] == man["reference"]["episodes"]
    cfg = WMRLConfig(
        artifacts=str(with_policy),
        out=tmp_path / "run",
        ppo_steps=64,
        num_envs=4,
        group_size=2,
        n_steps=4,
        flow_steps=2,
        snapshots=1,
        eval_episodes=0,
        device="cpu",
        progress=False,
    )
    report = run_wmrl(cfg)
    assert report["ppo"]["env_steps"] == 64
    names = list(report["policies"])
    assert names[0] == "bc" and names[-1] == "bc+ppo" and len(names) == 3  # one snapshot
    m = len(load_artifacts(with_policy).reset_features)
    for p in report["policies"].values():
        assert p["dream"]["episodes"] == m and len(p["dream"]["returns"]) == m
        assert np.all(np.isfinite(p["dream"]["returns"]))
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    # Re-running resumes: PPO is already at its budget, so no further steps are taken.
    again = run_wmrl(cfg)
    assert again["ppo"]["env_steps"] == 64 and again["ppo"]["history"] == report["ppo"]["history"]
    # A finished run reports the time it trained, not the time of the call that resumed it.
    assert again["ppo"]["wall_clock_s"] == report["ppo"]["wall_clock_s"] > 0
    # Resuming with other training options is refused, naming them; a longer budget is fine.
    with pytest.raises(ResumeMismatchError, match=r"learning_rate: 0\.0001 -> 0\.001"):
        run_wmrl(dataclasses.replace(cfg, learning_rate=1e-3))
    with pytest.raises(ValueError, match="--group-size 3 must divide --num-envs 4"):
        run_wmrl(dataclasses.replace(cfg, group_size=3, out=tmp_path / "run_g3"))
    # Any saved policy can be the base instead of the bundle's (one without a policy here).
    other = dataclasses.replace(cfg, artifacts=str(bundle), base_policy=str(bc), ppo_steps=16,
                                out=tmp_path / "run_other", reward_mode=None)  # fmt: skip
    assert run_wmrl(other)["ppo"]["env_steps"] == 16
    with pytest.raises(ValueError, match="reward_mode"):
        run_wmrl(dataclasses.replace(other, reward_mode="bogus", out=tmp_path / "e1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        run_wmrl(dataclasses.replace(other, bc_data=str(root / "data"), out=tmp_path / "e2"))
    with pytest.raises(MissingPolicyError, match="not a saved policy"):
        run_wmrl(
            dataclasses.replace(other, base_policy=str(tmp_path / "none"), out=tmp_path / "e3")
        )
    # A policy for another action size is refused when the bundle is built.
    with pytest.raises(ValueError, match="K \\* A"):
        build_bundle(bundle_config(root, out=tmp_path / "b2", chunk=4, policy=bc))


def test_progress_head_in_a_bundle(bundle: Path, tmp_path: Path) -> None:
    """A head trained on the bundle's data ships with add-progress-head; reward_mode="progress"
    pays reward_scale x progress, and every mode takes the success estimate from the head."""
    import shutil

    from rla_gym.cli.main import main as cli
    from rla_gym.reward.train_progress import TrainProgressConfig, train_progress_head
    from rla_gym.utils.training import TrainerConfig

    with pytest.raises(FileNotFoundError, match="add-progress-head"):
        make_env(bundle, reward_mode="progress")
    head = train_progress_head(
        TrainProgressConfig(
            data=str(bundle.parent / "data"),
            encoder="tiny",
            out=str(tmp_path / "head"),
            val_fraction=0.3,
            trainer=TrainerConfig(
                steps=20, batch_size=16, progress=False, tensorboard=False, device="cpu"
            ),
        )
    )
    mine = tmp_path / "bundle"
    shutil.copytree(bundle, mine)
    assert cli(["add-progress-head", "--bundle", str(mine), "--head", str(head.checkpoint)]) == 0
    man = load_artifacts(mine).manifest
    assert man["progress"]["dtype"] == "int8" and man["total_bytes"] > 0
    assert man["size_bytes"]["progress/model.safetensors"] > 0
    env = make_env(mine, reward_mode="progress", reward_scale=2.0)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert 0.0 <= info["progress"] <= 1.0 and reward == pytest.approx(2.0 * info["progress"])
    aligned = make_env(mine)
    aligned.reset(seed=0)
    _, r_aligned, _, _, info_a = aligned.step(env.action_space.sample())
    assert r_aligned <= 0 and "progress" in info_a  # aligned reward, head's success estimate
    # The success estimate can read the dream-calibrated goal distance instead of the head.
    # A threshold every dreamed state passes makes the choice visible.
    loose = shutil.copytree(mine, tmp_path / "loose")
    m = load_json(loose / "manifest.json")
    m["success"]["threshold"], m["success"]["train_balanced_accuracy"] = 1e6, 0.9
    save_json(m, loose / "manifest.json")
    untrusted = shutil.copytree(loose, tmp_path / "untrusted")
    save_json({**m, "success": {**m["success"], "train_balanced_accuracy": 0.6}},
              untrusted / "manifest.json")  # fmt: skip
    verdicts = {}
    for source in ("goal_distance", "auto", "progress_head"):
        est = make_env(loose, success_estimate=source)
        est.reset(seed=0)
        verdicts[source] = [est.step(np.zeros(est.action_space.shape, np.float32))[4]
                            for _ in range(3)]  # fmt: skip
        assert all("progress" in i for i in verdicts[source])  # the head still reports progress
    # auto reads the dream-calibrated distance when the bundle has its threshold.
    assert all(i["is_success_estimate"] for i in verdicts["goal_distance"] + verdicts["auto"])
    # The head's verdict does not depend on the threshold, and auto keeps the head where the
    # distance's calibration on dreamed replays was poor.
    for folder, source in ((mine, "progress_head"), (untrusted, "auto")):
        other = make_env(folder, success_estimate=source)
        other.reset(seed=0)
        assert [i["is_success_estimate"] for i in verdicts["progress_head"]] == [
            other.step(np.zeros(other.action_space.shape, np.float32))[4]["is_success_estimate"]
            for _ in range(3)
        ]
    with pytest.raises(FileNotFoundError, match="add-progress-head"):
        make_env(bundle, success_estimate="progress_head")
    with pytest.raises(ValueError, match="success_estimate must be"):
        make_env(mine, success_estimate="oracle")
    # A head saved before configs named their type under "type" ships naming it there.
    legacy = shutil.copytree(head.checkpoint, tmp_path / "legacy_head")
    cfg = load_json(legacy / "config.json")
    save_json({"model": cfg.pop("type"), **cfg}, legacy / "config.json")
    again = shutil.copytree(bundle, tmp_path / "again")
    assert cli(["add-progress-head", "--bundle", str(again), "--head", str(legacy)]) == 0
    shipped = load_json(again / "progress" / "config.json")
    assert shipped["type"] == "progress-head" and "model" not in shipped
    with pytest.raises(EncoderMismatchError):
        from rla_gym.pipelines.build_bundle import add_progress_head

        other = tmp_path / "other"
        shutil.copytree(mine, other)
        m = load_json(other / "manifest.json")
        m["encoder_fingerprint"] = "other@0"
        save_json(m, other / "manifest.json")
        add_progress_head(other, head.checkpoint)


def _history_model(bundle: Path, folder: Path, history: int) -> Path:
    """The bundle's world model with a history of ``history`` control steps, weights perturbed
    so that the earlier frame matters (a fresh history model starts as the Markov one)."""
    import dataclasses

    from rla_gym.world_model import RLAWorldModel

    base = load_artifacts(bundle).load_world_model()
    torch.manual_seed(0)
    model = RLAWorldModel(dataclasses.replace(base.config, history=history), base.rla)
    model.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.2 * torch.randn_like(p))
        model.motion_scale.fill_(0.05)
    model.encoder_fingerprint = base.encoder_fingerprint
    return model.save_pretrained(folder)


def test_world_model_with_history(bundle: Path, tmp_path: Path) -> None:
    """A history model sees the frame one chunk back: the env, the vector env and given starts
    carry it; a history other than the chunk is refused."""
    from rla_gym.envs.vector import RLAWorldVectorEnv

    ckpt = _history_model(bundle, tmp_path / "hist", K)
    env = make_env(bundle, world_model=str(ckpt))
    assert env.unwrapped.core.history == K
    act = np.random.default_rng(0).uniform(-1, 1, K * A).astype(np.float32)
    obs0, info0 = env.reset(seed=3, options={"start": "init", "index": 1})
    first = env.step(act)[0]
    second = env.step(act)[0]
    # The same start given as features, at rest (no earlier frame, or itself), dreams the same.
    for prev in ({}, {"previous_features": obs0}):
        opts = {"start": "features", "features": obs0, "demo": info0["demo"], **prev}
        env.reset(seed=3, options=opts)
        np.testing.assert_array_equal(env.step(act)[0], first)
        np.testing.assert_array_equal(env.step(act)[0], second)
    # Moving: another earlier frame changes the next state.
    opts = {"start": "features", "features": obs0, "previous_features": obs0 - 0.3}
    env.reset(seed=3, options={**opts, "demo": info0["demo"]})
    assert np.abs(env.step(act)[0] - first).max() > 1e-4
    with pytest.raises(ValueError, match="previous_features"):
        env.reset(options={**opts, "previous_features": obs0[:2]})
    # The vector env agrees with single envs, mid-demo starts (earlier frame: the demo's) too.
    n = 3
    venv = RLAWorldVectorEnv(n, artifacts=str(bundle), flow_steps=2, world_model=str(ckpt),
                             reset_demo_fraction=0.5)  # fmt: skip
    singles = [make_env(bundle, world_model=str(ckpt), reset_demo_fraction=0.5) for _ in range(n)]
    vobs, _ = venv.reset(seed=20)
    sobs = [e.reset(seed=20 + i)[0] for i, e in enumerate(singles)]
    assert (venv._t > 0).any()  # a mid-demo start among them
    np.testing.assert_allclose(vobs, np.stack(sobs), atol=1e-5)
    rng = np.random.default_rng(1)
    for _ in range(3):
        acts = rng.uniform(-1, 1, (n, K * A)).astype(np.float32)
        vobs = venv.step(acts)[0]
        for i, e in enumerate(singles):
            np.testing.assert_allclose(vobs[i], e.step(acts[i])[0], atol=1e-4)
    with pytest.raises(ValueError, match="chunk is K=8"):
        make_env(bundle, world_model=str(_history_model(bundle, tmp_path / "bad", K + 1)))


def test_dreamed_calibration_scores_an_episode_as_the_env_reads_it(bundle: Path) -> None:
    from rla_gym.pipelines.build_bundle import closest_approach

    goal = np.zeros((4, 16), np.float32)
    away = np.full((4, 16), 0.5, np.float32)
    # The env declares success at the first chunk within the threshold, so an episode that
    # passes the goal and leaves it scores as close as it came, not as where it ended.
    assert closest_approach(np.stack([away, goal + 0.01, away]), goal) == pytest.approx(0.01)
    assert closest_approach(np.stack([away, away]), goal) == pytest.approx(0.5)
    success = load_artifacts(bundle).manifest["success"]
    assert success["metric"].startswith("smallest mean L1") and success["threshold"] is not None


def test_the_imagined_evaluation_runs_as_long_as_the_real_one() -> None:
    from rla_gym.pipelines.wmrl import imagined_horizon

    libero = {"sim": "libero", "chunk": 8, "task_max_steps": 280}
    assert imagined_horizon(libero, None) == 35  # the task's 280 control steps
    assert imagined_horizon(libero, 100) == 13  # an explicit real limit, rounded up
    # dm-control's own limit is no evaluation horizon; an old bundle records no limit.
    assert imagined_horizon({"sim": "dmc", "chunk": 8, "task_max_steps": 1000}, None) is None
    assert imagined_horizon({"sim": "robosuite", "chunk": 8}, None) is None
    assert imagined_horizon({"sim": "dmc", "chunk": 8, "task_max_steps": 1000}, 40) == 5
