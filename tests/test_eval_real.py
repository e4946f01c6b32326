"""Real-simulator side of the agents: RealFeatureEnv, ``rla-gym eval`` and the SB3 glue.

The real simulator is dm-control reacher (the cheapest) seen through the ``tiny`` encoder at
32 px, i.e. ``(4, 16)`` features: the observation space of the tiny dreamed bundle of
``tiny_bundle.py``, whose session fixture is reused here. CPU, well under a minute.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rla_gym.agents import ActorCritic, ActorCriticConfig
from rla_gym.cli.main import main

pytest.importorskip("dm_control")
pytest.importorskip("stable_baselines3")
pytestmark = [pytest.mark.sim, pytest.mark.usefixtures("one_torch_thread")]

TINY_REAL = {"sim": "dmc", "encoder": "tiny", "resolution": 32}
TINY_POLICY = ActorCriticConfig(
    token_dim=8, feature_dim=16, actor_hidden=(16,), critic_hidden=(16,), mlp_hidden=(16,)
)


def _real_env(**kw: object) -> gym.Env:
    from rla_gym.envs.real import RealFeatureEnv

    return RealFeatureEnv(**TINY_REAL, max_episode_steps=3, **kw)


def _eval(tmp_path: Path, *extra: str) -> int:
    argv = ["eval", "--sim", "dmc", "--encoder", "tiny", "--resolution", "32", "--episodes", "2",
            "--workers", "1", "--max-steps", "16", "--no-progress", *extra]  # fmt: skip
    return main(argv)


def test_real_feature_env_passes_check_env_and_is_deterministic() -> None:
    from gymnasium.utils.env_checker import check_env

    gym.register("RealFeatureTest-v0", entry_point="rla_gym.envs.real:RealFeatureEnv",
                 kwargs={**TINY_REAL, "max_episode_steps": 3})  # fmt: skip
    try:
        env = gym.make("RealFeatureTest-v0")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning but the two known ones fails the test
            warnings.filterwarnings("ignore", message=".*observation space m.* is (-)?infinity")
            warnings.filterwarnings("ignore", message=".*unconventional shape")
            check_env(env.unwrapped)
        env.close()
    finally:
        del gym.registry["RealFeatureTest-v0"]

    env1, env2 = _real_env(render_mode="rgb_array"), _real_env()
    assert env1.observation_space.shape == (4, 16) and env1.action_space.shape == (16,)
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 16)).astype(np.float32)
    runs = []
    for env in (env1, env2):
        obs, _ = env.reset(seed=7)
        obs_l, rest = [obs], []
        for a in actions:
            obs, *out = env.step(a)
            obs_l.append(obs)
            rest.append(out)
        runs.append((obs_l, rest))
    (o1, rest1), (o2, rest2) = runs
    assert all(np.array_equal(a, b) for a, b in zip(o1, o2, strict=True)) and rest1 == rest2
    _, terminated, truncated, info = rest1[-1]
    assert not terminated and truncated and info["t"] == 24 and info["control_steps"] == 8
    assert not np.array_equal(env2.reset(seed=8)[0], o1[0])
    frame = env1.render()
    assert frame.dtype == np.uint8 and frame.shape == (32, 32, 3) and frame.any()
    with pytest.raises(ValueError, match=r"Box\(-1.0, 1.0, \(16,\)"):
        env1.step(np.full(16, 1.5, np.float32))
    with pytest.raises(ValueError, match="no fixed init states"):
        env1.reset(options={"init_state_id": 0})
    for env in (env1, env2):
        env.close()
        env.close()  # closing twice is allowed


def test_eval_cli_on_saved_actor_critic_and_scripted(tmp_path: Path) -> None:
    ActorCritic((4, 16), 16, TINY_POLICY).save(tmp_path / "policy")
    assert _eval(tmp_path, "--policy", str(tmp_path / "policy"),
                 "--out", str(tmp_path / "ac.json")) == 0  # fmt: skip
    r = json.loads((tmp_path / "ac.json").read_text())
    assert r["episodes"] == 2 and len(r["rows"]) == 2 and r["policy"]["chunk"] == 8
    lo, hi = r["wilson95"]
    assert 0.0 <= lo <= r["success_rate"] <= hi <= 1.0
    assert {"mean_return", "mean_length", "provenance"} <= set(r)
    assert all(row["length"] <= 16 for row in r["rows"])

    assert _eval(tmp_path, "--policy", "expert", "--max-steps", "200",
                 "--out", str(tmp_path / "expert.json")) == 0  # fmt: skip
    r = json.loads((tmp_path / "expert.json").read_text())
    assert r["success_rate"] == 1.0 and r["policy"]["kind"] == "expert"


def test_repeat_action_mode_in_the_real_env_and_eval(tmp_path: Path) -> None:
    """``action_mode="repeat"`` in ``RealFeatureEnv`` is the chunk mode with the action tiled;
    ``rla-gym eval --chunk 8`` holds a one-action policy's action for the 8 control steps."""
    chunk_env, repeat_env = _real_env(), _real_env(action_mode="repeat")
    assert repeat_env.action_space.shape == (2,)
    a = np.array([0.7, -0.4], np.float32)
    for env in (chunk_env, repeat_env):
        env.reset(seed=5)
    o_c, r_c, *_ = chunk_env.step(np.tile(a, 8))
    o_r, r_r, *_ = repeat_env.step(a)
    np.testing.assert_array_equal(o_c, o_r)
    assert r_c == r_r
    for env in (chunk_env, repeat_env):
        env.close()
    ActorCritic((4, 16), 2, TINY_POLICY).save(tmp_path / "repeat")
    assert _eval(tmp_path, "--policy", str(tmp_path / "repeat"), "--chunk", "8",
                 "--out", str(tmp_path / "repeat.json")) == 0  # fmt: skip
    r = json.loads((tmp_path / "repeat.json").read_text())
    assert r["policy"]["chunk"] == 8 and all(row["length"] == 16 for row in r["rows"])


def test_eval_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    ActorCritic((4, 16), 16, TINY_POLICY).save(tmp_path / "policy")
    cases = [
        (["--policy", str(tmp_path / "policy"), "--resolution", "64"],
         "expects observations of shape (4, 16) but dmc/reacher-easy with tiny at 64 px gives "
         "features (16, 16)"),
        (["--policy", str(tmp_path / "policy"), "--chunk", "4"], "i.e. K=8 for A=2, not --chunk 4"),
        (["--policy", str(tmp_path / "missing")], "no policy checkpoint at"),
    ]  # fmt: skip
    ActorCritic((4, 16), 15, TINY_POLICY).save(tmp_path / "odd")
    cases.append((["--policy", str(tmp_path / "odd")], "not a chunk K x A"))
    for extra, message in cases:
        assert _eval(tmp_path, *extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err

    from rla_gym.errors import MissingExtraError

    def no_sim(*args: object, **kwargs: object) -> None:
        raise MissingExtraError("dm-control", "sim", "for dm-control tasks")

    monkeypatch.setattr("rla_gym.sims.make_sim", no_sim)
    assert _eval(tmp_path, "--policy", "expert") == 2
    assert 'pip install "rla-gym[sim]"' in capsys.readouterr().err


def test_sb3_extractor_ppo_in_dream_then_eval_in_real(bundle: Path, tmp_path: Path) -> None:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import VecMonitor

    from rla_gym.cli.evaluate import load_sb3_model
    from rla_gym.sb3 import SB3PatchExtractor, SB3VecEnvAdapter, patch_policy_kwargs

    venv = gym.make_vec("RLAWorld-dmc-reacher-v0", num_envs=4, artifacts=str(bundle),
                        vectorization_mode="vector_entry_point", flow_steps=2)  # fmt: skip
    env = VecMonitor(SB3VecEnvAdapter(venv.unwrapped))
    kwargs = patch_policy_kwargs(features_dim=32, token_dim=8, net_arch=(32,))
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=32, n_epochs=1, seed=0,
                policy_kwargs={**kwargs, "log_std_init": -0.5})  # fmt: skip
    extractor = model.policy.features_extractor
    assert isinstance(extractor, SB3PatchExtractor) and extractor.pool.kind == "conv"
    model.learn(64)
    assert model.num_timesteps >= 64 and len(model.ep_info_buffer) > 0
    model.save(tmp_path / "ppo.zip")
    sac = SAC("MlpPolicy", env, buffer_size=200, batch_size=16, learning_starts=16,
              policy_kwargs=kwargs, seed=0)  # fmt: skip
    sac.learn(24)
    sac.save(tmp_path / "sac.zip")
    env.close()
    assert isinstance(load_sb3_model(tmp_path / "sac.zip"), SAC)

    # The dream's (4, 16) features and 8 x 2 chunks are exactly real reacher's through `tiny`.
    assert _eval(tmp_path, "--policy", str(tmp_path / "ppo.zip"), "--episodes", "1",
                 "--out", str(tmp_path / "sb3.json")) == 0  # fmt: skip
    r = json.loads((tmp_path / "sb3.json").read_text())
    assert r["policy"]["kind"] == "sb3" and r["episodes"] == 1


def test_one_rollout_path_for_eval_and_the_env_and_one_info_schema(
    bundle: Path,
    tmp_path: Path,
) -> None:
    """``rla-gym eval``'s episodes are :func:`rollout` on a ``RealFeatureEnv``: the same seed
    gives the same episode either way; real and dreamed ``info`` follow the shared schema."""
    from rla_gym.envs.real import DREAM_STEP_INFO, REAL_STEP_INFO, RealFeatureEnv
    from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim, rollout

    ActorCritic((4, 16), 16, TINY_POLICY).save(tmp_path / "policy")
    policy = SavedPolicy(str(tmp_path / "policy"))
    cfg = RealEvalConfig(sim="dmc", encoder="tiny", resolution=32, episodes=1, max_steps=16,
                         workers=1, seed=3)  # fmt: skip
    via_eval = evaluate_in_sim(policy, cfg, progress=False)["rows"][0]
    env = RealFeatureEnv(**TINY_REAL, max_episode_steps=2, terminate_on_success=True)
    direct = rollout(env, policy(), seed=3, keep_observations=True)
    assert direct["decisions"] == 2 and direct["observations"].shape == (3, 4, 16)
    for key in ("success", "return", "length"):
        assert via_eval[key] == direct[key], key

    _, info = env.reset(seed=3)
    *_, info = env.step(env.action_space.sample())
    assert set(info) == set(REAL_STEP_INFO) and "is_success_estimate" not in info
    env.close()
    dream = gym.make("RLAWorld-dmc-reacher-v0", artifacts=str(bundle), flow_steps=1)
    dream.reset(seed=3)
    *_, info = dream.step(dream.action_space.sample())
    assert set(DREAM_STEP_INFO) <= set(info) and "is_success" not in info
    assert set(REAL_STEP_INFO) & set(info) == {"t"}
    # The bundle's manifest through the env's public seam: the real env above is its twin.
    man = dream.unwrapped.manifest
    assert (int(man["chunk"]), man["encoder"]) == (8, "tiny")
    dream.close()


def test_lazy_rendering_matches_every_frame_rendering_when_a_chunk_stops_early() -> None:
    """Without ``render_mode`` the env renders only chunk ends; a chunk cut short by success
    must still observe the frame of the step that solved the task, exactly."""
    from rla_gym.envs.real import RealFeatureEnv
    from rla_gym.sims.policies import make_policy

    kw = {**TINY_REAL, "terminate_on_success": True, "max_episode_steps": 40}
    lazy, eager = RealFeatureEnv(**kw), RealFeatureEnv(**kw, render_mode="rgb_array")
    try:
        # The expert's actions from seed s, recorded once and replayed open loop (exact physics).
        for seed in range(6):
            obs = lazy.sim.reset(seed=seed)
            expert = make_policy("expert", lazy.sim, seed=seed)
            expert.reset(obs)
            acts = []
            while not obs.success and len(acts) < 200:
                acts.append(lazy.from_sim_action(np.asarray(expert(obs), np.float32)))
                obs = lazy.sim.step(lazy.to_sim_action(acts[-1]), render=False)
            if obs.success and len(acts) % lazy.chunk:
                break  # solved mid-chunk: the case under test
        else:
            pytest.fail("no seed solved mid-chunk")
        k = lazy.chunk
        pad = np.zeros((-len(acts)) % k * lazy.action_dim, np.float32)
        chunks = np.concatenate([np.concatenate(acts), pad]).reshape(-1, k * lazy.action_dim)
        for env in (lazy, eager):
            env.reset(seed=seed)
        for chunk in chunks:
            o1, _, done1, _, i1 = lazy.step(chunk)
            o2, _, done2, _, i2 = eager.step(chunk)
            np.testing.assert_array_equal(o1, o2)
            assert (done1, i1["t"]) == (done2, i2["t"])
        assert done1 and i1["t"] == len(acts) and i1["control_steps"] < k
    finally:
        lazy.close()
        eager.close()


def test_interrupted_evaluation_resumes_without_rerunning_finished_episodes(
    tmp_path: Path,
) -> None:
    from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim

    ActorCritic((4, 16), 16, TINY_POLICY).save(tmp_path / "policy")
    cfg = RealEvalConfig(**TINY_REAL, episodes=2, workers=1, max_steps=16)
    log, ident = tmp_path / "eval.partial.jsonl", {"path": str(tmp_path / "policy")}
    first = evaluate_in_sim(SavedPolicy(str(tmp_path / "policy")), cfg, progress=False,
                            resume=log, identity=ident)  # fmt: skip
    lines = log.read_text().splitlines()
    assert len(lines) == 3  # header + one row per finished episode
    # An interruption after episode 0: its logged row (marked) is kept, only episode 1 re-runs.
    marked = {**json.loads(lines[1]), "return": 123.0}
    log.write_text("\n".join([lines[0], json.dumps(marked)]) + "\n")
    again = evaluate_in_sim(SavedPolicy(str(tmp_path / "policy")), cfg, progress=False,
                            resume=log, identity=ident)  # fmt: skip
    assert [r["return"] for r in again["rows"]] == [123.0, first["rows"][1]["return"]]
    assert len(log.read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="another evaluation"):
        evaluate_in_sim(SavedPolicy(str(tmp_path / "policy")), cfg, progress=False,
                        resume=log, identity={"path": "elsewhere"})  # fmt: skip


def test_task_score_orders_reacher_outcomes_touch_first_then_distance() -> None:
    """``SimAdapter.task_score`` (benchmarks' privileged truth): on reacher a touch outranks any
    miss, then the closer finger wins; a task without a score says so."""
    from rla_gym.sims import make_sim
    from rla_gym.sims.base import SimStep

    sim = make_sim("dmc", resolution=32)
    start = sim.reset(seed=4)

    def at(to_target: tuple[float, float]) -> SimStep:
        return SimStep(start.frame, start.proprio, 0.0, False, {"to_target": np.array(to_target)})

    far, near = at((0.4, 0.1)), at((0.05, 0.0))
    assert sim.task_score(start, near, False) > sim.task_score(start, far, False)
    assert sim.task_score(start, far, True) > sim.task_score(start, near, False)
    end = sim.step(np.zeros(sim.action_dim, np.float32), render=False)
    expected = -float(np.linalg.norm(end.state["to_target"]))
    assert sim.task_score(start, end, False) == pytest.approx(expected)
    sim.close()
    other = make_sim("dmc", task="cartpole-balance", resolution=32)
    first = other.reset(seed=0)
    with pytest.raises(NotImplementedError, match="cartpole-balance"):
        other.task_score(first, first, False)
    other.close()


def test_run_from_restores_and_reports_the_chunks_outcome() -> None:
    """``SimAdapter.run_from``: the same state and actions give the same outcome whatever ran in
    between; only the last step is rendered; a solved step anywhere is reported."""
    from rla_gym.sims import make_sim

    sim = make_sim("dmc", resolution=32)
    sim.reset(seed=4)
    state = sim.get_sim_state()
    actions = np.random.default_rng(0).uniform(-1, 1, (6, sim.action_dim)).astype(np.float32)
    first, solved = sim.run_from(state, actions)
    sim.run_from(state, -actions)  # something else in between
    again, solved_again = sim.run_from(state, actions)
    assert np.array_equal(first.frame, again.frame) and first.frame.any()
    assert np.array_equal(first.proprio, again.proprio) and solved == solved_again
    blind, _ = sim.run_from(state, actions, render_last=False)
    assert not blind.frame.any() and np.array_equal(blind.proprio, first.proprio)
    # The same as restoring and stepping by hand, success at any step included.
    sim.set_sim_state(state, render=False)
    steps = [sim.step(a, render=False) for a in actions]
    assert solved == any(s.success for s in steps)
    assert np.array_equal(steps[-1].proprio, first.proprio)
    sim.close()
