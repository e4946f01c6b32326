"""Policies that read the robot's body beside the features (``ActorCriticConfig.body_dim``):
behaviour cloning with bodies, the ``{"features", "proprio"}`` input, ``train-bc --proprio`` and
the real evaluation's seam (tiny, CPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.agents import ActorCritic, ActorCriticConfig, BCConfig, BehaviourCloning
from rla_gym.agents.networks import SpaceMismatchError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"token_dim": 8, "feature_dim": 32, "actor_hidden": (32,), "critic_hidden": (16,)}


def _data(m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features that carry nothing, bodies far from standard, actions decided by the body."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(0, 1, (m, 4, 8)).astype(np.float32)
    body = rng.uniform(-1, 1, (m, 3)).astype(np.float32) * 5.0 + 10.0
    w = np.random.default_rng(99).normal(0, 1, (3, 2)).astype(np.float32)
    return feats, body, np.tanh((body - 10.0) / 5.0 @ w).astype(np.float32)


def test_bc_learns_from_the_body_what_the_features_do_not_show(tmp_path: Path) -> None:
    feats, body, act = _data(1500, 0)
    test_f, test_b, test_a = _data(300, 1)
    cfg = BCConfig(steps=600, batch_size=64, learning_rate=3e-3, seed=0)
    torch.manual_seed(0)
    blind = ActorCritic((4, 8), 2, ActorCriticConfig(**SMALL))
    BehaviourCloning(blind, cfg, "cpu").fit(feats, act)
    torch.manual_seed(0)
    sees = ActorCritic((4, 8), 2, ActorCriticConfig(**SMALL, body_dim=3))
    assert sees.reads_body and not blind.reads_body
    BehaviourCloning(sees, cfg, "cpu").fit(feats, act, bodies=body)
    # Standardised with the training rows' statistics (validation rows held out).
    np.testing.assert_allclose(sees.body_mean.numpy(), body.mean(0), atol=0.3)
    np.testing.assert_allclose(sees.body_std.numpy(), body.std(0), rtol=0.1)
    err_sees = np.mean((sees.predict({"features": test_f, "proprio": test_b})[0] - test_a) ** 2)
    err_blind = np.mean((blind.predict(test_f)[0] - test_a) ** 2)
    assert err_sees < 0.2 * err_blind, (err_sees, err_blind)

    # One unbatched observation of a real env; the saved policy acts the same after loading.
    one = {"features": test_f[0], "proprio": test_b[0]}
    back = ActorCritic.load(sees.save(tmp_path / "sees"))
    assert back.reads_body
    np.testing.assert_allclose(back.predict(one)[0], sees.predict(one)[0], rtol=1e-5)
    # A features-only policy shown the body ignores it.
    np.testing.assert_array_equal(blind.predict({**one})[0], blind.predict(test_f[0])[0])
    with pytest.raises(SpaceMismatchError, match="reads the robot's body too"):
        sees.predict(test_f[0])
    with pytest.raises(SpaceMismatchError, match=r"got body \(1, 2\)"):
        sees.predict({"features": test_f[0], "proprio": test_b[0, :2]})
    with pytest.raises(SpaceMismatchError, match="reads features only"):
        BehaviourCloning(blind, cfg, "cpu").fit(feats, act, bodies=body)
    with pytest.raises(SpaceMismatchError, match="pass bodies"):
        BehaviourCloning(sees, cfg, "cpu").fit(feats, act)


def test_train_bc_with_proprio_and_the_real_evaluations_seam(bundle: Path, tmp_path: Path) -> None:
    from tiny_bundle import K

    from rla_gym.data.proprio import body_spec
    from rla_gym.evaluation.real import SavedPolicy
    from rla_gym.pipelines.world_action import TrainBCConfig, train_bc_from_dataset

    out = tmp_path / "bc_body"
    data = bundle.parent / "data"
    cfg = TrainBCConfig(data=data, out=out, encoder="tiny", chunk=K, steps=20, device="cpu")
    meta = train_bc_from_dataset(dataclasses.replace(cfg, proprio=True))
    fields = body_spec("libero").fields
    assert meta["proprio_fields"] == list(fields)
    policy = SavedPolicy(str(out))()
    assert policy.reads_body  # real evaluation shows it {"features", "proprio"}
    net = ActorCritic.load(out)
    obs = {"features": np.zeros(net.observation_shape, np.float32),
           "proprio": np.zeros(len(fields), np.float32)}  # fmt: skip
    assert policy(obs).shape == (net.action_dim,)
    plain = tmp_path / "bc"
    assert train_bc_from_dataset(dataclasses.replace(cfg, out=plain))["proprio_fields"] == []
    assert not SavedPolicy(str(plain))().reads_body
