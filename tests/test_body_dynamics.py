"""The body's own dynamics (:mod:`rla_gym.world_model.body`): trained on a dataset's recorded
proprio and actions it predicts held-out bodies, a bundle ships it (``add-body-model``, checked
before the bundle is touched) and the dream's next body then comes from it
(``RLAWorldConfig.body_dynamics``). Tiny synthetic bundle, CPU, seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_bundle import A, K, make_env

from rla_gym.envs.artifacts import load_artifacts
from rla_gym.pipelines.build_bundle import add_body_model
from rla_gym.world_model.body import BodyDynamics, BodyDynamicsConfig
from rla_gym.world_model.train_body import TrainBodyConfig, train_body_dynamics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def body_model(body_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("body") / "run"
    cfg = TrainBodyConfig(data=body_bundle.parent / "data", out=out, chunk=K, hidden=64,
                          steps=600, val_fraction=0.3)  # fmt: skip
    meta = train_body_dynamics(cfg)
    # The square moves by the summed actions: held out, the next body is predicted, after one
    # chunk and after four of its own predictions, far better than "it stays where it is" (< 0).
    assert meta["val_episodes"] >= 1 and meta["train_windows"] > 100
    assert meta["val_r2"]["1"]["pooled"] > 0.8, meta["val_r2"]
    assert meta["val_r2"]["4"]["pooled"] > 0.5, meta["val_r2"]
    return out / "checkpoint"


def test_a_bundle_dreams_its_body_with_its_body_model(
    body_bundle: Path, body_model: Path, tmp_path: Path
) -> None:
    b = Path(shutil.copytree(body_bundle, tmp_path / "b"))
    with pytest.raises(FileNotFoundError, match="add-body-model"):
        make_env(b, body_dynamics="body_model")
    add_body_model(b, body_model)
    art = load_artifacts(b)
    assert art.manifest["body"]["val_r2"]["1"]["pooled"] > 0.8
    model = art.load_body_model()
    act = np.random.default_rng(0).uniform(-1, 1, K * A).astype(np.float32)
    steps = {}
    for source in ("auto", "world_model"):
        env = make_env(b, body_dynamics=source)
        obs, _ = env.reset(seed=0, options={"start": "init", "index": 1})
        nxt, *_ = env.step(act)
        steps[source] = (obs["proprio"], nxt["proprio"], nxt["features"])
    body, after, feats = steps["auto"]
    with torch.no_grad():  # the tiny bundle's actions are already in simulator units
        want = model(torch.from_numpy(body)[None], torch.from_numpy(act).view(1, K, A))[0]
    np.testing.assert_allclose(after, want.numpy(), atol=1e-5)
    assert not np.allclose(after, steps["world_model"][1])  # the world model's head differs ...
    np.testing.assert_array_equal(feats, steps["world_model"][2])  # ... the scene does not


def test_a_body_model_that_does_not_fit_is_refused_and_the_bundle_kept(
    bundle: Path, body_bundle: Path, body_model: Path, tmp_path: Path
) -> None:
    b = Path(shutil.copytree(body_bundle, tmp_path / "b"))
    before = (b / "manifest.json").read_text()
    cfg = BodyDynamics.from_pretrained(body_model).config
    wrong = BodyDynamics(BodyDynamicsConfig(proprio_fields=cfg.proprio_fields, chunk=K + 1,
                                            action_dim=A, hidden=8))  # fmt: skip
    wrong.save_pretrained(tmp_path / "wrong")
    with pytest.raises(ValueError, match=f"chunks of {K + 1} x {A}"):
        add_body_model(b, tmp_path / "wrong")
    assert (b / "manifest.json").read_text() == before and not (b / "body").exists()
    flat = Path(shutil.copytree(bundle, tmp_path / "flat"))
    with pytest.raises(ValueError, match="features only"):
        add_body_model(flat, body_model)
    with pytest.raises(ValueError, match="features only"):
        make_env(bundle, body_dynamics="body_model")
    with pytest.raises(ValueError, match="body_dynamics must be"):
        make_env(body_bundle, body_dynamics="oracle")
    m = BodyDynamics.from_pretrained(body_model)
    with pytest.raises(ValueError, match=r"body must be \(B, 11\)"):
        m(torch.zeros(2, 5), torch.zeros(2, K, A))
    with pytest.raises(ValueError, match=rf"actions must be \(B, {K}, {A}\)"):
        m(torch.zeros(2, 11), torch.zeros(2, K, A + 1))
