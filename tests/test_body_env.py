"""The robot's body in the dreamed env: bundles that carry it, envs that dream and show it, and
everything that must keep working around it (tiny bundles, CPU, < 60 s)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tiny_bundle import A, K, bundle_config, make_env, make_vec_env

from rla_gym.data.proprio import body_spec
from rla_gym.envs.artifacts import load_artifacts
from rla_gym.errors import CorruptFileError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FIELDS = body_spec("libero").fields
P = len(FIELDS)


def _strip_body(src: Path, dst: Path) -> Path:
    """A copy of bundle ``src`` as built before the body existed: no body tensors in its bank,
    no ``proprio`` in its manifest."""
    from safetensors.numpy import load_file, save_file

    from rla_gym.features.base import sha256_file

    shutil.copytree(src, dst)
    bank = load_file(str(dst / "bank.safetensors"))
    save_file({k: v for k, v in bank.items() if "proprio" not in k}, str(dst / "bank.safetensors"))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.pop("proprio")
    manifest["files"]["bank.safetensors"]["sha256"] = sha256_file(dst / "bank.safetensors")
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _rollout(env: gym.Env, seed: int, actions: np.ndarray) -> list[Any]:
    obs = [env.reset(seed=seed)[0]]
    for a in actions:
        obs.append(env.step(a)[0])
    return obs


def test_bundles_carry_the_body_and_old_ones_still_load(
    bundle: Path, body_bundle: Path, tmp_path: Path
) -> None:
    from rla_gym.data.feature_episodes import load_body

    for b in (bundle, body_bundle):  # stored whenever the dataset has a body, whatever the model
        art = load_artifacts(b)
        assert art.manifest["proprio"] == {"sim": "libero", "fields": list(FIELDS), "dim": P}
        assert art.proprio_fields == FIELDS
        assert art.reset_proprio.shape == (len(art.reset_features), P)
        assert art.reference_proprio.shape == (*art.reference.shape[:2], P)
    # The bank's rows are the episodes' body vectors at the same frames as their features.
    m = art.manifest
    bodies, _ = load_body(
        bundle.parent / "data", m["reset"]["episodes"] + m["reference"]["episodes"]
    )
    assert np.allclose(art.reset_proprio, [b[0] for b in bodies[: len(art.reset_proprio)]])
    ref0 = bodies[len(art.reset_proprio)]
    assert np.allclose(art.reference_proprio[0, 1], ref0[K])
    # A bundle built before the body loads with none, and its env shows features only.
    old = load_artifacts(_strip_body(bundle, tmp_path / "old"))
    assert old.proprio_fields == () and old.reset_proprio is None and old.reference_proprio is None
    env = make_env(old.path)
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert env.reset(seed=0)[0].shape == (4, 16)
    # A world model that dreams the body needs a bundle that carries it, with the same fields.
    with pytest.raises(CorruptFileError, match="carries no body vectors"):
        load_artifacts(_strip_body(body_bundle, tmp_path / "old_body")).load_world_model()
    with pytest.raises(ValueError, match="dreams the robot's body"):
        make_env(old.path, world_model=str(body_bundle / "world_model"))


def test_build_refuses_a_body_model_on_data_without_a_body(bundle: Path, tmp_path: Path) -> None:
    from rla_gym.pipelines.build_bundle import build_bundle

    root = bundle.parent
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    meta = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**meta, "sim": "dmc"}))  # 9 raw != reacher's 4
    with pytest.raises(ValueError, match=r"cannot carry it.*4 entries"):
        build_bundle(
            bundle_config(
                root, data=data, world_model=root / "wm_body" / "checkpoint", out=tmp_path / "b"
            )
        )
    # A features-only model builds without the body and the manifest says why.
    art = load_artifacts(build_bundle(bundle_config(root, data=data, out=tmp_path / "b")))
    assert art.manifest["proprio"] is None and "4 entries" in art.manifest["proprio_missing"]
    assert art.reset_proprio is None


def test_body_env_spaces_and_checkers(bundle: Path, body_bundle: Path) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env(body_bundle)  # obs_mode="auto" on a body bundle: features+proprio
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space) == {"features", "proprio"}
    assert space["features"].shape == (4, 16) and space["proprio"].shape == (P,)
    obs, _ = env.reset(seed=0)
    assert obs["proprio"].dtype == np.float32 and space.contains(obs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*observation space m.* is (-)?infinity")
        warnings.filterwarnings("ignore", message=".*unconventional shape")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    assert make_env(body_bundle, obs_mode="patch").observation_space.shape == (4, 16)
    assert make_env(bundle).observation_space.shape == (4, 16)  # "auto", features-only model
    with pytest.raises(ValueError, match="dreams features only"):
        make_env(bundle, obs_mode="features+proprio")
    with pytest.raises(ValueError, match="obs_mode must be one of"):
        make_env(body_bundle, obs_mode="proprio")


def test_dreamed_body_follows_the_action_and_the_seed(body_bundle: Path) -> None:
    env = make_env(body_bundle)
    art = load_artifacts(body_bundle)
    acts = np.random.default_rng(0).uniform(-1, 1, (3, K * A)).astype(np.float32)
    a, b = _rollout(env, 3, acts), _rollout(make_env(body_bundle), 3, acts)
    for x, y in zip(a, b, strict=True):  # same seed, same features and body
        assert np.array_equal(x["features"], y["features"])
        assert np.array_equal(x["proprio"], y["proprio"])
    other = _rollout(env, 3, -acts)
    assert np.array_equal(other[0]["proprio"], a[0]["proprio"])  # same start
    assert not np.allclose(other[1]["proprio"], a[1]["proprio"])  # another action, another body
    # Starts take the body of their own frame from the bank.
    obs, _ = env.reset(seed=0, options={"start": "init", "index": 2})
    assert np.array_equal(obs["proprio"], art.reset_proprio[2])
    obs, info = env.reset(seed=0, options={"start": "demo_random", "index": 1})
    assert np.array_equal(obs["proprio"], art.reference_proprio[1, info["t"] // K])
    assert env.unwrapped.state_body.shape == (P,)


def test_features_starts_take_a_checked_body(bundle: Path, body_bundle: Path) -> None:
    env = make_env(body_bundle)
    art = load_artifacts(body_bundle)
    f, p = art.reset_features[0], art.reset_proprio[0] + 0.01
    obs, _ = env.reset(seed=0, options={"start": "features", "features": f, "proprio": p})
    assert np.array_equal(obs["proprio"], p.astype(np.float32))
    with pytest.raises(ValueError, match=r"needs options\['proprio'\].*eef_x"):
        env.reset(seed=0, options={"start": "features", "features": f})
    with pytest.raises(ValueError, match=r"11 entries.*finger_r"):
        env.reset(seed=0, options={"start": "features", "features": f, "proprio": p[:6]})
    with pytest.raises(ValueError, match="NaN"):
        env.reset(seed=0, options={"start": "features", "features": f, "proprio": p * np.nan})
    with pytest.raises(ValueError, match="dreams features only"):
        make_env(bundle).reset(options={"start": "features", "features": f, "proprio": p})


def test_vector_env_equals_single_envs_with_the_body(body_bundle: Path) -> None:
    n, horizon = 3, 2  # 4 steps cross a truncation: NEXT_STEP autoreset restores the bank's body
    venv = make_vec_env(body_bundle, n, max_episode_steps=horizon)
    singles = [make_env(body_bundle, max_episode_steps=horizon) for _ in range(n)]
    assert venv.single_observation_space == singles[0].observation_space
    vobs, _ = venv.reset(seed=10)
    sobs = [e.reset(seed=10 + i)[0] for i, e in enumerate(singles)]
    rng, ended = np.random.default_rng(0), [False] * n
    for step in range(4):
        for i, o in enumerate(sobs):
            for key in ("features", "proprio"):
                np.testing.assert_allclose(vobs[key][i], o[key], atol=1e-4, err_msg=f"{step}")
        acts = rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32)
        vobs, *_ = venv.step(acts)
        for i, e in enumerate(singles):
            if ended[i]:
                sobs[i], ended[i] = e.reset()[0], False
            else:
                sobs[i], _, _, ended[i], _ = e.step(acts[i])
    # Per-env bodies of "features" starts: a (B, P) option gives row i to env i.
    art = load_artifacts(body_bundle)
    feats, bodies = art.reset_features[:n], art.reset_proprio[:n]
    opts = {"start": "features", "features": feats, "proprio": bodies}
    np.testing.assert_array_equal(venv.reset(seed=0, options=opts)[0]["proprio"], bodies)


def test_sb3_multi_input_ppo_learns_on_the_body(body_bundle: Path) -> None:
    from stable_baselines3 import PPO

    from rla_gym.sb3 import SB3PatchExtractor, SB3VecEnvAdapter, patch_policy_kwargs

    env = SB3VecEnvAdapter(num_envs=2, artifacts=str(body_bundle), flow_steps=2)
    kwargs = patch_policy_kwargs(features_dim=16, token_dim=8, net_arch=(16,))
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, n_epochs=1,
                policy_kwargs=kwargs, device="cpu", seed=0)  # fmt: skip
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(16)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True)
    )
    extractor = model.policy.features_extractor
    assert isinstance(extractor, SB3PatchExtractor) and extractor.features_dim == 16 + P
    obs = env.reset()
    assert model.predict(obs)[0].shape == (2, K * A)
    with pytest.raises(ValueError, match=r"'features'.*'proprio'"):
        SB3PatchExtractor(gym.spaces.Dict({"patch": gym.spaces.Box(0, 1, (4, 16))}))


def test_features_only_policies_and_the_planner_on_a_body_bundle(body_bundle: Path) -> None:
    from rla_gym.agents import PPO, ActorCritic, PPOConfig, UnsupportedSpaceError
    from rla_gym.envs import RLAWorldConfig
    from rla_gym.planning import DreamPlanner, PlannerConfig

    env = make_env(body_bundle)
    obs, _ = env.reset(seed=0)
    policy = ActorCritic((4, 16), K * A)
    assert np.array_equal(policy.predict(obs)[0], policy.predict(obs["features"])[0])
    with pytest.raises(UnsupportedSpaceError, match="obs_mode='patch'"):
        PPO(env, PPOConfig(n_steps=8), device="cpu")
    planner = DreamPlanner(
        RLAWorldConfig(artifacts=str(body_bundle)),
        PlannerConfig(samples=4, iterations=1, horizon=2, flow_steps=2),
    )
    seqs = np.zeros((4, 2, K * A), np.float32)
    returns = planner.evaluate(obs["features"], 0, 0, seqs, body=obs["proprio"])
    assert returns.shape == (4,) and np.isfinite(returns).all()
    assert planner.plan(obs["features"], 0, 0, body=obs["proprio"]).action.shape == (K * A,)
    with pytest.raises(ValueError, match="proprio"):
        planner.evaluate(obs["features"], 0, 0, seqs)
    # The MPC controller of `rla-gym eval --policy plan` asks the real evaluation for the body
    # (eval_env(..., body=True)) and plans from it; one on a features-only bundle does not.
    from rla_gym.planning import MPCController

    mpc = MPCController(planner)
    assert mpc.reads_body
    mpc.reset(seed=0)
    first = mpc(obs)
    assert first.shape == (K * A,) and mpc.t == K
    mpc.reset(seed=0)
    np.testing.assert_array_equal(mpc(obs), first)  # the body reaches the plan, seeded
    with pytest.raises(ValueError, match="proprio"):
        MPCController(planner)(obs["features"])


def _with_body_head(src: Path, dst: Path) -> Path:
    """A copy of bundle ``src`` shipping an (untrained) progress head that reads the body."""
    from rla_gym.pipelines.build_bundle import add_progress_head
    from rla_gym.reward import ProgressHead, ProgressHeadConfig

    shutil.copytree(src, dst)
    fp = load_artifacts(dst).manifest["encoder_fingerprint"]
    torch.manual_seed(0)
    cfg = ProgressHeadConfig(feature_dim=16, num_tokens=4, encoder_fingerprint=fp, token_dim=8,
                             hidden=16, proprio_fields=FIELDS)  # fmt: skip
    head = ProgressHead(cfg)
    head.save_pretrained(dst.parent / f"{dst.name}_head")
    add_progress_head(dst, dst.parent / f"{dst.name}_head", dtype="float32")
    return dst


def test_a_progress_head_that_reads_the_body_gets_the_dreamed_one(
    bundle: Path, body_bundle: Path, tmp_path: Path
) -> None:
    b = _with_body_head(body_bundle, tmp_path / "body_head")
    env = make_env(b, reward_mode="progress", reward_scale=1.0)
    core = env.unwrapped.core
    assert core.head_reads_body
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(K * A, np.float32))
    s, body = env.unwrapped.state_features, env.unwrapped.state_body
    with torch.no_grad():
        progress, _ = core.progress_head(s[None], body[None])  # the dreamed state and body
    assert reward == pytest.approx(float(progress[0]), abs=1e-6) == info["progress"]
    with pytest.raises(ValueError, match="body reached"):
        core.score(s[None], torch.zeros(1, dtype=torch.long), np.array([K]))
    # A head that reads the body on a world model that dreams none: refused when the env is made.
    with pytest.raises(ValueError, match=r"reads the robot's body.*features only"):
        make_env(_with_body_head(bundle, tmp_path / "features_head"))


@pytest.mark.sim
def test_real_env_shows_the_real_body() -> None:
    pytest.importorskip("dm_control")
    from gymnasium.utils.env_checker import check_env

    from rla_gym.data.proprio import body_vector
    from rla_gym.envs.real import RealFeatureEnv

    env = RealFeatureEnv(sim="dmc", encoder="tiny", resolution=32, chunk=K, max_episode_steps=2,
                         obs_mode="features+proprio")  # fmt: skip
    try:
        obs, _ = env.reset(seed=0)
        assert set(obs) == {"features", "proprio"} and obs["proprio"].shape == (6,)
        assert env.observation_space.contains(obs)
        here = env.sim.set_sim_state(env.sim.get_sim_state(), render=False)  # same state
        assert np.allclose(obs["proprio"], body_vector("dmc", here.proprio), atol=1e-5)
        obs, *_ = env.step(np.full(env.action_space.shape, 0.5, np.float32))
        assert np.isclose(np.linalg.norm(obs["proprio"][:2]), 1.0, atol=1e-5)  # sin^2 + cos^2
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*observation space m.* is (-)?infinity")
            warnings.filterwarnings("ignore", message=".*unconventional shape")
            warnings.filterwarnings("ignore", message=".*alternative render modes")
            check_env(env)
    finally:
        env.close()


def test_counterfactual_scoring_dreams_from_the_real_body(body_bundle: Path) -> None:
    """``score_models`` hands a body world model the real starts' bodies (recorded by
    ``measure_real``) and refuses outcomes saved without them."""
    from rla_gym.evaluation.counterfactual import CounterfactualConfig, RealOutcomes, score_models

    art = load_artifacts(body_bundle)
    s_n, m_n = 3, 4  # recorded, two noise scales, random
    start = art.reset_features[:s_n].astype(np.float32)
    rng = np.random.default_rng(0)
    real = start[:, None, None] + 0.1 * rng.standard_normal((s_n, m_n, 1, *start.shape[1:]))
    outcomes = RealOutcomes(
        str(body_bundle),
        start,
        real.astype(np.float32),
        rng.uniform(-1, 1, (s_n, m_n, K, A)).astype(np.float32),
        np.repeat(start[None], 1, axis=0),
        (1,),
        [{"episode": i, "policy": "expert", "t": 0, "reference_demo": 0} for i in range(s_n)],
        {},
        start,
        {"start": art.reset_proprio[:s_n], "previous": art.reset_proprio[:s_n],
         "real": np.zeros((s_n, m_n, 1, P), np.float32)},
    )  # fmt: skip
    cfg = CounterfactualConfig(states=s_n, episodes=s_n, horizons=(1,), flow_steps=2)
    scored = score_models(outcomes, cfg, {"body": {}}, log=lambda _: None)
    assert scored["body"]["1"]["states"] == s_n and -1 <= scored["body"]["1"]["direction"] <= 1
    outcomes.body = None
    with pytest.raises(ValueError, match="saved without it"):
        score_models(outcomes, cfg, {"body": {}}, log=lambda _: None)


def test_the_aligned_reward_can_read_the_body(bundle: Path, body_bundle: Path) -> None:
    """``reward_proprio_weight``: the aligned reward minus ``scale * w *`` the standardised body's
    mean gap to the reference demo's body at the same row; the same dream otherwise."""
    plain, weighted = make_env(body_bundle), make_env(body_bundle, reward_proprio_weight=0.5)
    action = np.full(plain.action_space.shape, 0.3, np.float32)
    plain.reset(seed=1)
    weighted.reset(seed=1)
    for _ in range(2):
        o1, r1, *_, i1 = plain.step(action)
        o2, r2, *_, i2 = weighted.step(action)
    np.testing.assert_array_equal(o1["proprio"], o2["proprio"])  # the same dream
    assert i2["body_gap"] > 0 and "body_gap" not in i1
    scale = weighted.unwrapped.core.config.reward_scale
    assert r2 == pytest.approx(r1 - scale * 0.5 * i2["body_gap"], rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="dreams features only"):
        make_env(bundle, reward_proprio_weight=0.5)
    with pytest.raises(ValueError, match="reward_proprio_weight must be >= 0"):
        make_env(body_bundle, reward_proprio_weight=-1.0)


def test_a_warm_started_body_model_starts_as_its_source(bundle: Path, tmp_path: Path) -> None:
    """``init_from``: the source's RLA, architecture, weights and statistics; only the body parts
    are fresh, and the zero-initialised body embedding leaves the source's features unchanged."""
    import dataclasses

    from tiny_bundle import _trainer

    from rla_gym.data.feature_episodes import FeatureDataConfig
    from rla_gym.utils.io import load_json
    from rla_gym.world_model import RLAWorldModel
    from rla_gym.world_model.train import TrainWorldModelConfig, train_world_model

    root = bundle.parent
    source = root / "wm" / "checkpoint"
    out = train_world_model(
        TrainWorldModelConfig(
            data=FeatureDataConfig(folder=str(root / "data"), encoder="tiny", val_pairs=8),
            init_from=str(source),
            out=str(tmp_path / "warm"),
            norm_pairs=32,
            trainer=dataclasses.replace(_trainer(), steps=1, learning_rate=1e-12),
            proprio=True,
        )
    )
    warm, old = RLAWorldModel.from_pretrained(out.checkpoint), RLAWorldModel.from_pretrained(source)
    assert warm.proprio_fields == FIELDS and warm.config.width == old.config.width
    fresh = load_json(Path(out.checkpoint) / "meta.json")["fresh_weights"]
    assert fresh and all(k.startswith(("proprio_", "body_")) for k in fresh)
    s = torch.from_numpy(load_artifacts(bundle).reset_features[:2]).float()
    acts = torch.full((2, K, A), 0.3)
    g = [torch.Generator().manual_seed(i) for i in range(2)]
    g2 = [torch.Generator().manual_seed(i) for i in range(2)]
    torch.testing.assert_close(
        warm.sample(s, acts, steps=2, generator=g, proprio=torch.zeros(2, P)),
        old.sample(s, acts, steps=2, generator=g2),
        atol=1e-5,
        rtol=1e-4,
    )


def test_reset_starts_from_a_dataset_replace_the_bank(
    bundle: Path, body_bundle: Path, tmp_path: Path
) -> None:
    """``reset_starts=<dataset>``: every episode's first frame (and body) is an init start, each
    aligned with its nearest reference demo; another task's dataset is refused."""
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.data.feature_episodes import load_body
    from rla_gym.envs.artifacts import nearest_demo

    data = bundle.parent / "data"
    store = EpisodeStore(data)
    ids = store.episode_ids()
    first = np.stack([store.load_features(e, "tiny").features[0] for e in ids])
    bodies = np.stack([b[0] for b in load_body(data, ids)[0]])
    env = make_env(body_bundle, reset_starts=str(data))
    starts = env.unwrapped.core.starts
    assert len(starts.reset_features) == len(ids) != len(load_artifacts(body_bundle).reset_features)
    for i in (0, len(ids) - 1):
        obs, info = env.reset(seed=i, options={"start": "init", "index": i})
        np.testing.assert_allclose(obs["features"], first[i], rtol=1e-6)
        np.testing.assert_allclose(obs["proprio"], bodies[i], rtol=1e-6)
        ref0 = load_artifacts(body_bundle).reference[:, 0]
        assert info["demo"] == nearest_demo(first[i], ref0)
    seen = {env.reset(seed=s)[1]["start_index"] for s in range(40)}
    assert len(seen) > 5  # a reset without options draws from the whole dataset
    env.close()
    # A features-only bundle takes the same starts without their bodies.
    plain = make_env(bundle, reset_starts=str(data))
    np.testing.assert_allclose(plain.reset(seed=0, options={"index": 2})[0], first[2], rtol=1e-6)
    other = tmp_path / "other"
    shutil.copytree(data, other)
    manifest = json.loads((other / "dataset.json").read_text())
    (other / "dataset.json").write_text(json.dumps({**manifest, "task": "another"}))
    with pytest.raises(ValueError, match="this bundle dreams libero synthetic"):
        make_env(bundle, reset_starts=str(other))
    with pytest.raises(ValueError, match="is not a dataset"):
        make_env(bundle, reset_starts=str(tmp_path))
