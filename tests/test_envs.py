"""Dreamed envs end to end on a tiny bundle built from a synthetic dataset (CPU, < 120 s)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tiny_bundle import A, K, T, make_env, make_vec_env

from rla_gym.envs.artifacts import (
    ArtifactsNotFoundError,
    dequantize_int8,
    load_artifacts,
    quantize_int8,
)
from rla_gym.errors import CorruptFileError, EncoderMismatchError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rollout(env: gym.Env, seed: int, n: int = 4) -> tuple[list[np.ndarray], list[float]]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    obs_l, rew_l = [obs], []
    for _ in range(n):
        obs, r, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        obs_l.append(obs)
        rew_l.append(r)
    return obs_l, rew_l


def test_bundle_manifest_and_quantization(bundle: Path) -> None:
    art = load_artifacts(bundle)
    m = art.manifest
    assert m["chunk"] == K and m["action_dim"] == A and m["grid"] == [2, 2]
    assert art.reference.shape == (3, T // K + 1, 4, 16)
    assert m["quantization"]["relative_error"] < 0.01
    assert m["success"]["threshold"] is not None
    assert m["total_bytes"] < 12e6
    x = np.random.default_rng(0).normal(size=(50, 4, 16)).astype(np.float32)
    q, s, o = quantize_int8(x)
    assert np.abs(dequantize_int8(q, s, o) - x).max() <= s.max() / 2 + 1e-6


@pytest.mark.parametrize("action_mode", ["chunk", "repeat"])
def test_check_env_gymnasium_and_sb3(bundle: Path, action_mode: str) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env(bundle, render_mode="rgb_array", action_mode=action_mode)
    assert env.action_space.shape == ((K * A,) if action_mode == "chunk" else (A,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning but the two known ones fails the test
        warnings.filterwarnings("ignore", message=".*observation space m.* is (-)?infinity")
        warnings.filterwarnings("ignore", message=".*unconventional shape")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


def test_same_seed_same_trajectory_and_pickle(bundle: Path) -> None:
    env1, env2 = make_env(bundle), make_env(bundle)
    o1, r1 = _rollout(env1, 3)
    o2, r2 = _rollout(env2, 3)
    assert all(np.array_equal(a, b) for a, b in zip(o1, o2, strict=True)) and r1 == r2
    o3, _ = _rollout(env1, 4)
    assert not np.array_equal(o1[-1], o3[-1])
    clone = pickle.loads(pickle.dumps(env1.unwrapped))
    o4, r4 = _rollout(clone, 3)
    assert all(np.array_equal(a, b) for a, b in zip(o1, o4, strict=True)) and r1 == r4


def test_vector_env_equals_single_envs(bundle: Path) -> None:
    n, steps, horizon = 3, 5, 3  # crosses one truncation -> exercises NEXT_STEP autoreset
    venv = make_vec_env(bundle, n, max_episode_steps=horizon)
    singles = [make_env(bundle, max_episode_steps=horizon) for _ in range(n)]
    rng = np.random.default_rng(0)
    vobs, _ = venv.reset(seed=10)
    sobs = [e.reset(seed=10 + i)[0] for i, e in enumerate(singles)]
    np.testing.assert_allclose(vobs, np.stack(sobs), atol=1e-5)
    ended = [False] * n
    for _ in range(steps):
        acts = rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32)
        vobs, vr, _, vtrunc, _ = venv.step(acts)
        for i, e in enumerate(singles):
            if ended[i]:
                o, r, tr = e.reset()[0], 0.0, False
                ended[i] = False
            else:
                o, r, _, tr, _ = e.step(acts[i])
                ended[i] = tr
            np.testing.assert_allclose(vobs[i], o, atol=1e-4)
            assert vr[i] == pytest.approx(r, abs=1e-4) and vtrunc[i] == tr
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP


def test_repeat_mode_equals_chunk_mode_with_tiled_actions(bundle: Path) -> None:
    """``action_mode="repeat"`` is ``"chunk"`` with the ``(A,)`` action tiled ``K`` times: same
    seed, same observations and rewards (single env and native vector env)."""
    acts = np.random.default_rng(2).uniform(-1, 1, (3, A)).astype(np.float32)
    chunk_env, repeat_env = make_env(bundle), make_env(bundle, action_mode="repeat")
    for env in (chunk_env, repeat_env):
        env.reset(seed=11)
    for a in acts:
        o_c, r_c, *_ = chunk_env.step(np.tile(a, K))
        o_r, r_r, *_ = repeat_env.step(a)
        np.testing.assert_array_equal(o_c, o_r)
        assert r_c == r_r
    from rla_gym.envs import RLAWorldVectorEnv

    venvs = [
        RLAWorldVectorEnv(2, artifacts=str(bundle), flow_steps=2, action_mode=m)
        for m in ("chunk", "repeat")
    ]
    for v in venvs:
        v.reset(seed=3)
    batch = np.stack([acts[0], acts[1]])
    o_c, r_c, *_ = venvs[0].step(np.tile(batch, (1, K)))
    o_r, r_r, *_ = venvs[1].step(batch)
    np.testing.assert_array_equal(o_c, o_r)
    np.testing.assert_array_equal(r_c, r_r)
    with pytest.raises(ValueError, match=r"Box\(-1.0, 1.0, \(2,\), float32\): one action"):
        repeat_env.step(np.tile(acts[0], K))
    from rla_gym.envs import RLAWorldConfig

    with pytest.raises(ValueError, match="action_mode"):
        RLAWorldConfig(action_mode="hold")  # type: ignore[arg-type]


def test_reset_from_features(bundle: Path) -> None:
    """``options={"start": "features"}`` dreams from given features: a bank start's features and
    demo reproduce that start's trajectory; bad features raise naming the expected shape."""
    from rla_gym.envs.artifacts import nearest_demo
    from rla_gym.envs.vector import RLAWorldVectorEnv

    env = make_env(bundle)
    art = env.unwrapped.core.art
    act = np.random.default_rng(0).uniform(-1, 1, K * A).astype(np.float32)
    obs0, info0 = env.reset(seed=3, options={"start": "init", "index": 2})
    from_bank = env.step(act)
    obs, info = env.reset(seed=3, options={"start": "features", "features": obs0,
                                           "demo": info0["demo"]})  # fmt: skip
    np.testing.assert_array_equal(obs, obs0)
    assert (info["start"], info["t"], info["demo"]) == ("features", 0, info0["demo"])
    from_features = env.step(act)
    np.testing.assert_array_equal(from_features[0], from_bank[0])
    assert from_features[1] == from_bank[1]
    _, info = env.reset(seed=3, options={"start": "features", "features": obs0 + 0.1})
    assert info["demo"] == nearest_demo(obs0 + 0.1, art.reference[:, 0])  # default: nearest
    for bad, match in (
        (obs0[:2], r"must have shape \(4, 16\)"),
        (np.full_like(obs0, np.nan), "NaN or inf"),
    ):
        with pytest.raises(ValueError, match=match):
            env.reset(options={"start": "features", "features": bad})
    with pytest.raises(ValueError, match="needs options\\['features'\\]"):
        env.reset(options={"start": "features"})
    with pytest.raises(ValueError, match="options\\['demo'\\] must be in"):
        env.reset(options={"start": "features", "features": obs0, "demo": 99})

    venv = RLAWorldVectorEnv(3, artifacts=str(bundle), flow_steps=2)
    feats = art.reset_features[:3]
    vobs, vinfo = venv.reset(seed=0, options={"start": "features", "features": feats,
                                              "demo": [0, 1, 0]})  # fmt: skip
    np.testing.assert_array_equal(vobs, feats)
    assert vinfo["demo"].tolist() == [0, 1, 0]
    assert np.isfinite(venv.step(np.zeros((3, K * A), np.float32))[0]).all()
    with pytest.raises(ValueError, match=r"\(4, 16\) or \(B=3, 4, 16\)"):
        venv.reset(options={"start": "features", "features": feats[:2]})


def test_mid_demo_training_resets(bundle: Path) -> None:
    """``reset_demo_fraction``: resets without a ``start`` option begin mid-demo with that
    probability (autoresets in a vector env too); explicit starts and the default are untouched."""
    from rla_gym.envs import RLAWorldConfig
    from rla_gym.envs.vector import RLAWorldVectorEnv

    starts = {
        f: [make_env(bundle, reset_demo_fraction=f).reset(seed=s)[1]["start"] for s in range(12)]
        for f in (0.0, 0.5, 1.0)
    }
    assert set(starts[0.0]) == {"init"} and set(starts[1.0]) == {"demo_random"}
    assert set(starts[0.5]) == {"init", "demo_random"}
    # Off, the seeded resets are exactly what they were before the option existed.
    plain = make_env(bundle).reset(seed=4)
    off = make_env(bundle, reset_demo_fraction=0.0).reset(seed=4)
    np.testing.assert_array_equal(plain[0], off[0])
    env = make_env(bundle, reset_demo_fraction=1.0)
    assert env.reset(seed=0, options={"start": "init", "index": 1})[1]["start"] == "init"
    _, info = env.reset(seed=0)
    assert info["t"] > 0  # an interior frame of a demo: its alignment row is not the first
    venv = RLAWorldVectorEnv(2, artifacts=str(bundle), flow_steps=1, reset_demo_fraction=1.0,
                             max_episode_steps=1)  # fmt: skip
    venv.reset(seed=0, options={"start": "init", "index": 0})
    venv.step(np.zeros((2, K * A), np.float32))  # truncates both
    _, _, _, _, info = venv.step(np.zeros((2, K * A), np.float32))  # autoreset step
    assert (venv._t > 0).all()  # the autoresets began mid-demo
    with pytest.raises(ValueError, match="reset_demo_fraction"):
        RLAWorldConfig(reset_demo_fraction=1.5)


def test_bad_actions_raise_with_space(bundle: Path) -> None:
    env = make_env(bundle)
    env.reset(seed=0)
    good = np.zeros(K * A, np.float32)
    for bad in (good[:-1], np.full_like(good, np.nan), np.full_like(good, 1.5)):
        with pytest.raises(ValueError, match=r"Box\(-1.0, 1.0, \(16,\)"):
            env.step(bad)


def test_missing_and_corrupt_artifacts(bundle: Path, tmp_path: Path) -> None:
    from rla_gym.envs.rla_world import resolve_artifacts

    with pytest.raises(ArtifactsNotFoundError, match="no embedded default bundle"):
        resolve_artifacts(None, "no-such-suite")
    with pytest.raises(ArtifactsNotFoundError, match="rla-gym build-bundle"):
        make_env(tmp_path / "nowhere")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    with open(broken / "bank.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    with pytest.raises(CorruptFileError, match="checksum"):
        load_artifacts(broken)
    shutil.copytree(bundle, tmp_path / "mismatch")
    cfg = tmp_path / "mismatch" / "world_model" / "config.json"
    cfg.write_text(cfg.read_text().replace("tiny@", "other@"))
    with pytest.raises(EncoderMismatchError):
        load_artifacts(tmp_path / "mismatch")


def test_build_bundle_cli_writes_the_same_bundle(bundle: Path, tmp_path: Path) -> None:
    """``rla-gym build-bundle`` with the fixture's options writes the fixture's bundle, byte for
    byte (only the manifest's creation time may differ)."""
    from rla_gym.cli.main import main

    root = bundle.parent
    argv = ["build-bundle", "--data", str(root / "data"), "--encoder", "tiny",
            "--world-model", str(root / "wm" / "checkpoint"), "--out", str(tmp_path / "cli"),
            "--chunk", str(K), "--num-reference-demos", "3", "--thumb-size", "16",
            "--val-fraction", "0.3"]  # fmt: skip
    assert main(argv) == 0
    for name in ("bank.safetensors", "world_model/model.safetensors"):
        assert (tmp_path / "cli" / name).read_bytes() == (bundle / name).read_bytes(), name
    manifest = {**load_artifacts(tmp_path / "cli").manifest, "created_utc": None}
    assert manifest == {**load_artifacts(bundle).manifest, "created_utc": None}
    assert main([*argv, "--chunk", "99"]) == 2  # beyond the model's horizon: one-line error


def test_reward_modes_differ_and_info(bundle: Path) -> None:
    acts = np.random.default_rng(1).uniform(-1, 1, (3, K * A)).astype(np.float32)
    rewards = {}
    for mode in ("aligned", "goal"):
        env = make_env(bundle, reward_mode=mode, num_uncertainty_samples=2, obs_mode="dict")
        obs, info = env.reset(seed=5, options={"start": "demo_random", "index": 0})
        assert set(obs) == {"patch", "pooled"} and info["t"] in (K, 2 * K, 3 * K, 4 * K)
        env.reset(seed=5, options={"start": "init", "index": 0})  # rows 1..3 are not the goal
        rewards[mode] = []
        for a in acts:
            _, r, _, _, info = env.step(a)
            rewards[mode].append(r)
        assert {
            "reward_l1",
            "dist_to_goal",
            "is_success_estimate",
            "uncertainty",
            "t",
            "demo",
        } <= set(info)
        assert info["uncertainty"] > 0
    assert not np.allclose(rewards["aligned"], rewards["goal"])


def test_reward_samples_is_validated() -> None:
    from rla_gym.envs import RLAWorldConfig

    for bad in (0, -2):
        with pytest.raises(ValueError, match="reward_samples"):
            RLAWorldConfig(reward_samples=bad)


def test_reward_samples_average_the_reward_not_the_state() -> None:
    """R = 4: the observations of R = 1, and the mean of the 4 samples' rewards, by hand."""
    from rla_gym.envs import RLAWorldEnv

    one = RLAWorldEnv(suite="libero", flow_steps=2)
    four = RLAWorldEnv(suite="libero", flow_steps=2, reward_samples=4)
    core = four.core
    low, high = (torch.tensor(core.manifest[k]) for k in ("action_low", "action_high"))
    obs_1, _ = one.reset(seed=3)
    obs_4, info = four.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(2):
        a = rng.uniform(-1, 1, four.action_space.shape).astype(np.float32)
        # The env's two noise streams as they are before the step: sample 0, samples 1..3.
        gens = [torch.Generator(), torch.Generator()]
        for g, own in zip(gens, (four._gen, four._extra_gen), strict=True):
            g.set_state(own.get_state())
        s = torch.from_numpy(obs_4)[None]
        raw = (high + low) / 2 + (high - low) / 2 * torch.from_numpy(a).view(1, core.chunk, -1)
        samples = [
            core.model.sample(s, raw, steps=2, generator=gens[min(j, 1)])[0, 0] for j in range(4)
        ]
        obs_1, r_1, *_ = one.step(a)
        obs_4, r_4, _, _, info = four.step(a)
        target = core.reference[info["demo"], info["t"] // core.chunk]
        by_hand = [-5.0 * float((x - target).abs().mean()) for x in samples]
        np.testing.assert_allclose(obs_4, obs_1, rtol=0, atol=1e-5)  # float rounding of a batch
        np.testing.assert_allclose(obs_4, samples[0].numpy(), rtol=0, atol=1e-5)
        assert r_4 == pytest.approx(np.mean(by_hand), rel=1e-4)
        assert r_1 == pytest.approx(by_hand[0], rel=1e-4)
        assert abs(r_4 - r_1) > 1e-5


def test_reward_samples_reduce_the_reward_variance() -> None:
    """From one start and one action, the reward spread over 16 noise seeds: R = 8 vs R = 1."""
    from rla_gym.envs import RLAWorldVectorEnv

    spread = {}
    for r in (1, 8):
        venv = RLAWorldVectorEnv(16, suite="libero", flow_steps=2, reward_samples=r)
        venv.reset(seed=0, options={"start": "init", "index": 0})
        a = np.random.default_rng(0).uniform(-1, 1, venv.single_action_space.shape)
        spread[r] = venv.step(np.tile(a.astype(np.float32), (16, 1)))[1].std()
    # Independent samples: 1 / sqrt(8) = 0.35 of the spread (measured 0.28).
    assert 0 < spread[8] < 0.6 * spread[1]


def test_aligned_reward_unit() -> None:
    from rla_gym.reward import AlignedReward

    ref = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)
    pred = torch.zeros(2, 1, 1)
    r, terms = AlignedReward(ref, scale=2.0)(pred, torch.tensor([0, 1]), torch.tensor([1, 9]))
    assert r.tolist() == [-2.0, -10.0]  # demo 1 row clamped to its last row (5)
    rg, _ = AlignedReward(ref, mode="goal")(pred, torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert rg.tolist() == [-10.0, -25.0] and terms["dist_to_goal"].tolist() == [2.0, 5.0]


def test_config_object_equals_kwargs_and_rejects_bad_options(bundle: Path) -> None:
    from rla_gym.envs import RLAWorldConfig, RLAWorldVectorEnv

    cfg = RLAWorldConfig(artifacts=str(bundle), flow_steps=2, reward_mode="goal")
    by_config = gym.make("RLAWorld-libero-v0", config=cfg)
    by_kwargs = make_env(bundle, reward_mode="goal")
    assert by_config.unwrapped.config == by_kwargs.unwrapped.config
    obs_a, rew_a = _rollout(by_config, seed=3, n=2)
    obs_b, rew_b = _rollout(by_kwargs, seed=3, n=2)
    np.testing.assert_allclose(rew_a, rew_b)
    np.testing.assert_allclose(obs_a[-1], obs_b[-1])
    # keyword arguments override the config's fields
    assert RLAWorldVectorEnv(2, config=cfg, flow_steps=3).config.flow_steps == 3
    with pytest.raises(TypeError, match="unknown RLAWorld option"):
        make_env(bundle, flow_stepz=2)
    with pytest.raises(ValueError, match="reward_mode"):
        RLAWorldConfig(reward_mode="dense")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flow_steps"):
        RLAWorldConfig(flow_steps=0)


@pytest.mark.parametrize(
    "env_id", ["RLAWorld-libero-v0", "RLAWorld-robosuite-lift-v0", "RLAWorld-dmc-reacher-v0"]
)
def test_one_horizon_however_the_env_is_built(env_id: str) -> None:
    """gym.make, gym.make_vec and direct construction truncate at the bundle's horizon."""
    from rla_gym.envs import RLAWorldConfig, RLAWorldEnv, RLAWorldVectorEnv

    suite = gym.spec(env_id).kwargs["suite"]
    single = gym.make(env_id, flow_steps=1)
    horizon = single.unwrapped.manifest["max_episode_steps"]
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", flow_steps=1)
    direct = RLAWorldEnv(suite=suite, flow_steps=1)
    direct_vec = RLAWorldVectorEnv(2, suite=suite, flow_steps=1)

    def steps_to_truncation(env: Any) -> int:
        env.reset(seed=0)
        for n in range(1, 100):
            a = np.zeros(env.action_space.shape, np.float32)
            truncated = np.all(env.step(a)[3])
            if truncated:
                return n
        raise AssertionError("never truncated")

    assert {steps_to_truncation(e) for e in (single, vec, direct, direct_vec)} == {horizon}
    assert direct.max_episode_steps == direct_vec.max_episode_steps == horizon
    short = RLAWorldEnv(suite=suite, flow_steps=1, max_episode_steps=2)
    assert steps_to_truncation(short) == 2
    with pytest.raises(ValueError, match="max_episode_steps"):
        RLAWorldConfig(max_episode_steps=0)


@pytest.mark.parametrize(
    "env_id", ["RLAWorld-libero-v0", "RLAWorld-robosuite-lift-v0", "RLAWorld-dmc-reacher-v0"]
)
def test_embedded_bundles_work_offline_and_pass_checkers(env_id: str) -> None:
    """Each registered id runs from the bundle shipped inside the package (no artifacts=)."""
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id, flow_steps=2)
    man = env.unwrapped.manifest
    assert man["total_bytes"] < 10_000_000 and man["weights"]["dtype"] == "int8"
    assert (env.unwrapped.core.art.path / "policy" / "model.safetensors").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
        assert np.isfinite(reward) and env.observation_space.contains(obs)
    assert steps == man["max_episode_steps"]
    # A bundle whose world model dreams the body shows it beside the features (a Dict), the
    # others a Box (a bundle records its dataset's body fields either way).
    dreams = env.unwrapped.core.body_fields
    assert isinstance(obs, dict) == bool(dreams)
    if dreams:
        body = man["proprio"]
        assert obs["proprio"].shape == (body["dim"],) and tuple(body["fields"]) == dreams
    env.close()


def test_guidance_option_is_checked_against_the_bundle() -> None:
    """A negative weight, or guidance on a model trained without action dropout, is refused."""
    from rla_gym.envs import RLAWorldConfig

    with pytest.raises(ValueError, match="guidance"):
        RLAWorldConfig(guidance=-0.5)
    with pytest.raises(ValueError, match="action dropout"):
        gym.make("RLAWorld-dmc-reacher-v0", guidance=2.0)
    env = gym.make("RLAWorld-dmc-reacher-v0", guidance=1.0, flow_steps=1)
    env.reset(seed=0)
    assert np.isfinite(env.step(env.action_space.sample())[1])
