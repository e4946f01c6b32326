"""The robot's body in the dreamed state: body vectors, body pairs and the world model's body head
(tiny, CPU)."""

# ruff: noqa: F811 (the tiny RLA and its episodes are tiny_world's fixtures, used by name)

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_world import (  # noqa: F401 (episodes and rla are fixtures)
    H_MAX,
    A,
    N,
    batch,
    episodes,
    gen,
    rla,
    synthetic_episodes,
)

from rla_gym.data.proprio import (
    BODY_SPECS,
    body_spec,
    body_vector,
    check_body,
    effector_position,
)
from rla_gym.data.windows import PairSampler
from rla_gym.rla import RLAAutoencoder
from rla_gym.utils.stats import r2_score
from rla_gym.world_model import RLAWorldModel, world_model_preset

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FIELDS = ("x", "y")


def test_body_vectors_are_continuous_and_checked() -> None:
    # Reacher: angles become sin/cos, so -pi and +pi (the same pose) give the same vector.
    a = body_vector("dmc", np.array([[np.pi, 0.5, 1.0, -2.0], [-np.pi, 0.5, 1.0, -2.0]]))
    assert a.shape == (2, 6) and np.allclose(a[0], a[1], atol=1e-6)
    assert np.allclose(a[0, 4:], [1.0, -2.0])
    # Panda: q and -q are one orientation; the 6-D rotation is the same and orthonormal.
    q = np.array([0.1, -0.7, 0.2, 0.6])
    q /= np.linalg.norm(q)
    raw = np.concatenate([[0.1, 0.2, 0.9], q, [0.02, -0.02]])
    raw_flipped = np.concatenate([[0.1, 0.2, 0.9], -q, [0.02, -0.02]])
    for sim in ("robosuite", "libero"):
        b, c = body_vector(sim, raw), body_vector(sim, raw_flipped)
        assert b.shape == (11,) and np.allclose(b, c, atol=1e-6)
        col0, col1 = b[3:6], b[6:9]
        assert np.isclose(np.linalg.norm(col0), 1, atol=1e-5)
        assert np.isclose(np.linalg.norm(col1), 1, atol=1e-5)
        assert abs(float(col0 @ col1)) < 1e-5
    # Identity quaternion -> identity columns.
    eye = body_vector("robosuite", np.array([0, 0, 0, 0, 0, 0, 1, 0, 0.0]))
    assert np.allclose(eye[3:9], [1, 0, 0, 0, 1, 0])
    assert {sim: body_spec(sim).dim for sim in BODY_SPECS} == {
        "dmc": 6,
        "robosuite": 11,
        "libero": 11,
    }
    with pytest.raises(ValueError, match="4 entries"):
        body_vector("dmc", np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        body_vector("dmc", np.array([np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="no body vector"):
        body_spec("atari")
    with pytest.raises(ValueError, match="shoulder_sin"):
        check_body(np.zeros(5), BODY_SPECS["dmc"].fields)
    with pytest.raises(ValueError, match="NaN"):
        check_body(np.full(6, np.nan), BODY_SPECS["dmc"].fields)


def body_episodes(num: int = 8, seed: int = 0) -> tuple[list, list[np.ndarray]]:
    """The synthetic point episodes and, as their body, the point's own position ``(T+1, 2)``."""
    eps = synthetic_episodes(num=num, seed=seed)
    rng = np.random.default_rng(seed)
    bodies = []
    for _feats, acts in eps:
        # synthetic_episodes draws one start per episode after its actions; recover the path
        # from the same generator so the body is exactly the point the features render.
        acts_again = rng.uniform(-1, 1, size=acts.shape)
        start = rng.uniform(-1, 1, (1, 2))
        assert np.allclose(acts_again, acts)
        bodies.append(np.concatenate([start, start + 0.1 * np.cumsum(acts, 0)]).astype(np.float32))
    return eps, bodies


def test_pair_sampler_adds_body_pairs_without_changing_draws() -> None:
    eps, bodies = body_episodes(4)
    plain = PairSampler(eps, 1, H_MAX, 0.5, seed=3).sample(16)
    with_body = PairSampler(eps, 1, H_MAX, 0.5, seed=3, proprio=bodies).sample(16)
    for k in plain:
        torch.testing.assert_close(plain[k], with_body[k])
    for i in range(16):
        e, t, h = (int(with_body[k][i]) for k in ("episode", "start", "lengths"))
        assert np.allclose(with_body["p_t"][i], bodies[e][t])
        assert np.allclose(with_body["p_th"][i], bodies[e][t + h])
    with pytest.raises(ValueError, match="proprio must have shape"):
        PairSampler(eps, 1, H_MAX, proprio=[b[:-1] for b in bodies])
    with pytest.raises(ValueError, match="proprio arrays"):
        PairSampler(eps, 1, H_MAX, proprio=bodies[:2])


def body_wm(rla: RLAAutoencoder, seed: int = 0) -> RLAWorldModel:
    torch.manual_seed(seed)
    cfg = world_model_preset("tiny", A, max_horizon=H_MAX, proprio_fields=FIELDS, body_hidden=64)
    return RLAWorldModel(cfg, rla)


def test_body_model_api_errors_and_checkpoint(rla: RLAAutoencoder, tmp_path: Path) -> None:
    wm = body_wm(rla).eval()
    s, a = batch()
    p = torch.randn(3, 2)
    feats, nxt = wm.sample_state(s, a, proprio=p, steps=3, generator=gen(1), num_samples=2)
    assert feats.shape == (3, 2, N, s.shape[2]) and nxt is not None and nxt.shape == (3, 2)
    # Zero-initialised proprio embedding: a fresh body model's features ignore the body.
    torch.testing.assert_close(
        wm.sample(s, a, proprio=p + 5, steps=3, generator=gen(1), num_samples=2), feats
    )
    feats_seq, bodies = wm.rollout(s, [a, a], proprio=p, steps=3, generator=gen(2))
    assert feats_seq.shape == (3, 2, N, s.shape[2]) and bodies.shape == (3, 2, 2)
    # The rollout feeds the predicted body back.
    g = gen(2)
    f1, b1 = wm.sample_state(s, a, proprio=p, steps=3, generator=g)
    _, b2 = wm.sample_state(f1[:, 0], a, proprio=b1, steps=3, generator=g)
    torch.testing.assert_close(bodies[:, 1], b2)
    wm.save_pretrained(tmp_path / "wm")
    again = RLAWorldModel.from_pretrained(tmp_path / "wm")
    assert again.proprio_fields == FIELDS and again.proprio_dim == 2
    torch.testing.assert_close(
        again.sample_state(s, a, proprio=p, steps=3, generator=gen(1), num_samples=2)[1], nxt
    )
    with pytest.raises(ValueError, match=r"pass proprio of shape \(B, 2\) \(x, y\)"):
        wm.sample(s, a)
    with pytest.raises(ValueError, match=r"proprio must have shape \(3, 2\) \(x, y\)"):
        wm.sample(s, a, proprio=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        wm.sample(s, a, proprio=torch.full((3, 2), float("nan")))
    features_only = RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX), rla)
    with pytest.raises(ValueError, match="features only"):
        features_only.sample(s, a, proprio=p)
    assert not isinstance(features_only.rollout(s, [a], steps=2), tuple)
    with pytest.raises(ValueError, match="p_t and p_th"):
        wm.fit_normalization(PairSampler(synthetic_episodes(2), 1, H_MAX).iter_eval(8, 8))


def test_body_head_learns_where_the_action_moves_the_body(rla: RLAAutoencoder) -> None:
    """The body head predicts the held-out next body far better than "the body stays", and
    the action is what it reads: the same chunk negated moves the body the other way."""
    eps, bodies = body_episodes(10)
    val_eps, val_bodies = body_episodes(3, seed=7)
    wm = body_wm(rla)
    sampler = PairSampler(eps, 1, H_MAX, 0.5, seed=0, proprio=bodies)
    wm.fit_normalization(PairSampler(eps, 1, H_MAX, 0.5, seed=1, proprio=bodies).iter_eval(256))
    opt = torch.optim.AdamW(wm.trainable_parameters(), lr=3e-3)
    g = gen(0)
    wm.train()
    for _ in range(250):
        b = sampler.sample(32)
        out = wm(b["s_t"], b["s_th"], b["actions"], b["lengths"], g, p_t=b["p_t"], p_th=b["p_th"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    wm.eval()
    pairs = next(iter(PairSampler(val_eps, 1, H_MAX, 0.5, proprio=val_bodies).iter_eval(128, 128)))
    _, nxt = wm.sample_state(
        pairs["s_t"], pairs["actions"], pairs["lengths"], proprio=pairs["p_t"], steps=2
    )
    assert nxt is not None
    # R² of the body's *change*: "the body stays" scores about 0 here.
    change = (pairs["p_th"] - pairs["p_t"]).numpy()
    r2 = r2_score((nxt - pairs["p_t"]).numpy(), change)
    assert r2 > 0.8, r2
    moved = (nxt - pairs["p_t"]).numpy()
    _, back = wm.sample_state(
        pairs["s_t"], -pairs["actions"], pairs["lengths"], proprio=pairs["p_t"], steps=2
    )
    assert back is not None
    cos = (moved * (back - pairs["p_t"]).numpy()).sum(1) / (
        np.linalg.norm(moved, axis=1) * np.linalg.norm((back - pairs["p_t"]).numpy(), axis=1) + 1e-9
    )
    assert float(np.median(cos)) < -0.5, np.median(cos)


def test_r2_score() -> None:
    y = np.random.default_rng(0).normal(size=(50, 3))
    assert r2_score(y, y) == pytest.approx(1.0)
    assert r2_score(np.broadcast_to(y.mean(0), y.shape), y) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="equal shapes"):
        r2_score(y, y[:-1])


def test_a_dataset_without_a_body_is_refused_naming_the_collector(tmp_path: Path) -> None:
    from tiny_bundle import write_dataset

    from rla_gym.data.feature_episodes import FeatureDataConfig, load_split

    store = write_dataset(tmp_path / "ds")
    cfg = FeatureDataConfig(folder=str(tmp_path / "ds"), encoder="tiny")
    split = load_split(cfg, 0, proprio=True)
    assert split.proprio_fields == BODY_SPECS["libero"].fields
    assert split.train_proprio is not None and len(split.train_proprio) == len(split.train)
    assert all(len(b) == len(f) for b, (f, _) in zip(split.train_proprio, split.train, strict=True))
    # An episode recorded without proprio: the error says which command records it.
    eid = store.episode_ids()[0]
    ep = store.read(eid)
    store.write(eid, dataclasses.replace(ep, proprio=np.zeros((len(ep.proprio), 0), np.float32)))
    with pytest.raises(ValueError, match="rla-gym collect --sim libero"):
        load_split(cfg, 0, proprio=True)
    # A simulator without a documented body vector.
    manifest = store.manifest_path
    manifest.write_text(manifest.read_text().replace('"libero"', '"atari"'))
    with pytest.raises(ValueError, match="no body vector is defined for sim 'atari'"):
        load_split(cfg, 0, proprio=True)


def test_effector_position_is_the_simulators_fingertip() -> None:
    """Reacher's fingertip by forward kinematics of the body vector equals where the real
    simulator puts it; a Panda's end effector is its recorded position."""
    from dm_control import suite

    env = suite.load("reacher", "easy", task_kwargs={"random": 0})
    physics = env.physics
    rng = np.random.default_rng(0)
    raw, tips = [], []
    for q in rng.uniform(-2.8, 2.8, (6, 2)):
        env.reset()
        physics.named.data.qpos["shoulder"], physics.named.data.qpos["wrist"] = q
        physics.forward()
        raw.append([*q, 0.0, 0.0])
        tips.append(physics.named.data.geom_xpos["finger"][:2].copy())
    body = body_vector("dmc", np.array(raw))
    fields = body_spec("dmc").fields
    np.testing.assert_allclose(effector_position(fields, body), np.array(tips), atol=1e-6)
    torch.testing.assert_close(
        effector_position(fields, torch.from_numpy(body)),
        torch.from_numpy(np.array(tips, np.float32)),
        atol=1e-6,
        rtol=0,
    )
    panda = body_vector("robosuite", np.array([0.1, -0.2, 0.9, 0, 0, 0, 1, 0.02, -0.02]))
    np.testing.assert_allclose(effector_position(body_spec("robosuite").fields, panda),
                               [0.1, -0.2, 0.9], atol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="no effector is known"):
        effector_position(("x", "y"), np.zeros((1, 2)))
