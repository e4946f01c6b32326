"""Dreamed envs end to end on a tiny bundle built from a synthetic dataset (CPU, < 120 s)."""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rla_gym.data.episodes import Episode, EpisodeStore
from rla_gym.envs.artifacts import (
    ArtifactsNotFoundError,
    dequantize_int8,
    load_artifacts,
    quantize_int8,
)
from rla_gym.errors import CorruptFileError, EncoderMismatchError
from rla_gym.features import make_encoder
from rla_gym.pipelines.build_bundle import BuildBundleConfig, build_bundle
from rla_gym.utils.io import load_json, save_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RES, A, T, K = 32, 2, 40, 8


def _frames(actions: np.ndarray, start: np.ndarray) -> np.ndarray:
    """A bright square moved by the actions over a fixed noisy background: ``(T+1, R, R, 3)``."""
    bg = np.random.default_rng(7).integers(0, 60, (RES, RES, 3), dtype=np.uint8)
    pos = np.clip(
        start + np.concatenate([[0, 0], np.cumsum(actions, 0)[:, :2].ravel()]).reshape(-1, 2) * 1.5,
        0,
        RES - 8,
    ).astype(int)
    out = np.repeat(bg[None], len(pos), 0)
    for i, (y, x) in enumerate(pos):
        out[i, y : y + 8, x : x + 8] = (250, 200, 30)
    return out


def _write_dataset(root: Path) -> EpisodeStore:
    store = EpisodeStore(root)
    store.init_manifest(
        {
            "sim": "libero",
            "task": "synthetic",
            "resolution": RES,
            "action_dim": A,
            "action_low": [-1.0] * A,
            "action_high": [1.0] * A,
        }
    )
    enc = make_encoder("tiny")
    store.begin_features("tiny", enc.fingerprint)
    rng = np.random.default_rng(0)
    for i in range(10):
        policy = "expert" if i < 7 else "noisy"
        start = rng.uniform(4, 12, 2)
        acts = rng.uniform(-1, 1, (T, A)).astype(np.float32)
        if policy == "expert":
            acts[:, :] = np.abs(acts) * 0.8  # experts drift towards the bottom-right "goal"
        frames = _frames(acts, start)
        success = np.zeros(T + 1, bool)
        success[-1] = policy == "expert"
        eid = store.episode_id(policy, i)
        store.write(
            eid,
            Episode(
                frames,
                acts,
                np.zeros((T + 1, 1), np.float32),
                np.zeros(T, np.float32),
                success,
                {"policy": policy, "init_state_id": i % 5},
            ),
        )
        store.write_features(eid, "tiny", enc.encode(frames), enc.fingerprint, (2, 2))
    return store


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic dataset -> tiny RLA + tiny RLA-WM (a few steps) -> artifacts bundle."""
    from rla_gym.data.feature_episodes import FeatureDataConfig
    from rla_gym.rla import RLAConfig
    from rla_gym.rla.train import TrainRLAConfig, train_rla
    from rla_gym.utils.training import TrainerConfig
    from rla_gym.world_model.train import TrainWorldModelConfig, train_world_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("envs")
    _write_dataset(root / "data")
    data = FeatureDataConfig(folder=str(root / "data"), encoder="tiny", val_pairs=8)
    trainer = TrainerConfig(
        steps=15,
        batch_size=16,
        val_every=10_000,
        ckpt_every=10_000,
        device="cpu",
        num_threads=1,
        progress=False,
        tensorboard=False,
    )
    rla = train_rla(
        TrainRLAConfig(
            data=data,
            out=str(root / "rla"),
            trainer=trainer,
            rla=RLAConfig(latent_tokens=2, latent_dim=4, width=32, depth=1, heads=2, max_gap=16),
        )
    )
    train_world_model(
        TrainWorldModelConfig(
            data=data,
            rla=str(rla.checkpoint),
            out=str(root / "wm"),
            preset="tiny",
            norm_pairs=32,
            trainer=trainer,
        )
    )
    return build_bundle(_bundle_config(root, out=root / "bundle"))


def _bundle_config(root: Path, **kw: Any) -> BuildBundleConfig:
    """Build options of the tiny bundle (``root`` holds the fixture's data and runs)."""
    return BuildBundleConfig(
        **{
            "data": root / "data",
            "encoder": "tiny",
            "world_model": root / "wm" / "checkpoint",
            "chunk": K,
            "num_reference_demos": 3,
            "thumb_size": 16,
            "val_fraction": 0.3,
            **kw,
        }
    )


def _make(bundle: Path, **kw: object) -> gym.Env:
    return gym.make("RLAWorld-libero-v0", artifacts=str(bundle), flow_steps=2, **kw)


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

    env = _make(bundle, render_mode="rgb_array", action_mode=action_mode)
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
    env1, env2 = _make(bundle), _make(bundle)
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
    venv = gym.make_vec(
        "RLAWorld-libero-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        artifacts=str(bundle),
        flow_steps=2,
        max_episode_steps=horizon,
    )
    singles = [_make(bundle, max_episode_steps=horizon) for _ in range(n)]
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


def test_repeat_mode_equals_chunk_mode_with_tiled_actions(bundle: Path) -> None:
    """``action_mode="repeat"`` is ``"chunk"`` with the ``(A,)`` action tiled ``K`` times: same
    seed, same observations and rewards (single env and native vector env)."""
    acts = np.random.default_rng(2).uniform(-1, 1, (3, A)).astype(np.float32)
    chunk_env, repeat_env = _make(bundle), _make(bundle, action_mode="repeat")
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

    env = _make(bundle)
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

    starts = {f: [_make(bundle, reset_demo_fraction=f).reset(seed=s)[1]["start"] for s in range(12)]
              for f in (0.0, 0.5, 1.0)}  # fmt: skip
    assert set(starts[0.0]) == {"init"} and set(starts[1.0]) == {"demo_random"}
    assert set(starts[0.5]) == {"init", "demo_random"}
    # Off, the seeded resets are exactly what they were before the option existed.
    plain = _make(bundle).reset(seed=4)
    off = _make(bundle, reset_demo_fraction=0.0).reset(seed=4)
    np.testing.assert_array_equal(plain[0], off[0])
    env = _make(bundle, reset_demo_fraction=1.0)
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
    env = _make(bundle)
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
        _make(tmp_path / "nowhere")
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
        env = _make(bundle, reward_mode=mode, num_uncertainty_samples=2, obs_mode="dict")
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
    by_kwargs = _make(bundle, reward_mode="goal")
    assert by_config.unwrapped.config == by_kwargs.unwrapped.config
    obs_a, rew_a = _rollout(by_config, seed=3, n=2)
    obs_b, rew_b = _rollout(by_kwargs, seed=3, n=2)
    np.testing.assert_allclose(rew_a, rew_b)
    np.testing.assert_allclose(obs_a[-1], obs_b[-1])
    # keyword arguments override the config's fields
    assert RLAWorldVectorEnv(2, config=cfg, flow_steps=3).config.flow_steps == 3
    with pytest.raises(TypeError, match="unknown RLAWorld option"):
        _make(bundle, flow_stepz=2)
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
        _bundle_config(
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
                                out=tmp_path / "run_other", reward_mode="goal")  # fmt: skip
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
        build_bundle(_bundle_config(root, out=tmp_path / "b2", chunk=4, policy=bc))


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
        assert np.isfinite(reward) and obs.shape == env.observation_space.shape
    assert steps == man["max_episode_steps"]
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


def test_progress_head_in_a_bundle(bundle: Path, tmp_path: Path) -> None:
    """A head trained on the bundle's data ships with add-progress-head; reward_mode="progress"
    pays reward_scale x progress, and every mode takes the success estimate from the head."""
    import shutil

    from rla_gym.cli.main import main as cli
    from rla_gym.reward.train_progress import TrainProgressConfig, train_progress_head
    from rla_gym.utils.training import TrainerConfig

    with pytest.raises(FileNotFoundError, match="add-progress-head"):
        _make(bundle, reward_mode="progress")
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
    env = _make(mine, reward_mode="progress", reward_scale=2.0)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert 0.0 <= info["progress"] <= 1.0 and reward == pytest.approx(2.0 * info["progress"])
    aligned = _make(mine)
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
        est = _make(loose, success_estimate=source)
        est.reset(seed=0)
        verdicts[source] = [est.step(np.zeros(est.action_space.shape, np.float32))[4]
                            for _ in range(3)]  # fmt: skip
        assert all("progress" in i for i in verdicts[source])  # the head still reports progress
    # auto reads the dream-calibrated distance when the bundle has its threshold.
    assert all(i["is_success_estimate"] for i in verdicts["goal_distance"] + verdicts["auto"])
    # The head's verdict does not depend on the threshold, and auto keeps the head where the
    # distance's calibration on dreamed replays was poor.
    for folder, source in ((mine, "progress_head"), (untrusted, "auto")):
        other = _make(folder, success_estimate=source)
        other.reset(seed=0)
        assert [i["is_success_estimate"] for i in verdicts["progress_head"]] == [
            other.step(np.zeros(other.action_space.shape, np.float32))[4]["is_success_estimate"]
            for _ in range(3)
        ]
    with pytest.raises(FileNotFoundError, match="add-progress-head"):
        _make(bundle, success_estimate="progress_head")
    with pytest.raises(ValueError, match="success_estimate must be"):
        _make(mine, success_estimate="oracle")
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
    env = _make(bundle, world_model=str(ckpt))
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
    singles = [_make(bundle, world_model=str(ckpt), reset_demo_fraction=0.5) for _ in range(n)]
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
        _make(bundle, world_model=str(_history_model(bundle, tmp_path / "bad", K + 1)))
