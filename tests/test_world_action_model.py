"""World action model (paper §7): BC with an RLA head that learns from action-free rows.

Tiny CPU data: random patch features (4 tokens x 8 channels), chunks of 3 two-dimensional actions,
a tiny RLA autoencoder. One torch thread, a few seconds in all.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.agents import ActorCritic, ActorCriticConfig, BCConfig, BehaviourCloning
from rla_gym.cli.main import main as cli
from rla_gym.data import Episode, EpisodeStore
from rla_gym.errors import EncoderMismatchError, RLAGymError
from rla_gym.pipelines.world_action import (
    EpisodeSelectionError,
    MissingRLAError,
    TrainBCConfig,
    select_episodes,
    train_bc_from_dataset,
)
from rla_gym.rla import RLAAutoencoder, RLAConfig, encode_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N, D, A, K, L = 4, 8, 2, 3, 12  # tokens, channels, action dim, chunk, latent size
FP = "tiny@0123456789ab"
SMALL = ActorCriticConfig(token_dim=16, feature_dim=32, actor_hidden=(32,), critic_hidden=(32,))


def _policy(seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic((N, D), K * A, SMALL)


def _rows(m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(m, N, D)).astype(np.float16)
    actions = rng.uniform(-1, 1, (m, K * A)).astype(np.float32)
    latents = rng.normal(size=(m, L)).astype(np.float32) * 3 + 1  # normalised inside fit
    return obs, actions, latents


def _tiny_rla(fingerprint: str = FP) -> RLAAutoencoder:
    torch.manual_seed(0)
    cfg = RLAConfig(feature_dim=D, num_tokens=N, latent_tokens=3, latent_dim=4, width=16,
                    depth=1, heads=2, encoder_fingerprint=fingerprint)  # fmt: skip
    return RLAAutoencoder(cfg)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """12 expert + 4 noisy episodes of 12 steps with cached 'tiny' features, and an RLA."""
    root = tmp_path_factory.mktemp("wam")
    store = EpisodeStore(root / "data")
    store.init_manifest({"sim": "test", "task": "t", "resolution": 8, "action_dim": A,
                         "action_low": [-1.0] * A, "action_high": [1.0] * A})  # fmt: skip
    store.begin_features("tiny", FP)
    rng = np.random.default_rng(0)
    for policy, n in (("expert", 12), ("noisy", 4)):
        for i in range(n):
            t = 12
            ep = Episode(frames=np.zeros((t + 1, 8, 8, 3), np.uint8),
                         actions=rng.uniform(-1, 1, (t, A)).astype(np.float32),
                         proprio=np.zeros((t + 1, 1), np.float32),
                         rewards=np.zeros(t, np.float32), success=np.r_[np.zeros(t, bool), True],
                         meta={"policy": policy})  # fmt: skip
            eid = store.episode_id(policy, i)
            store.write(eid, ep)
            store.write_features(eid, "tiny", rng.normal(size=(t + 1, N, D)), FP, (2, 2))
    _tiny_rla().save_pretrained(root / "rla")
    return root / "data", root / "rla"


# -- the trainer ---------------------------------------------------------------------------------


def test_rla_head_trains_the_trunk_on_action_free_rows() -> None:
    obs, actions, _ = _rows(48)
    actions[:] = np.nan  # videos only
    # A target the extractor can learn from s_t alone, as z(s_t, s_{t+K}) is along expert data.
    w = np.random.default_rng(1).normal(size=(N * D, L)).astype(np.float32)
    latents = obs.reshape(48, -1).astype(np.float32) @ w
    policy = _policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = BCConfig(steps=120, batch_size=16, learning_rate=3e-3, val_fraction=0.0)
    bc = BehaviourCloning(policy, cfg, device="cpu")
    bc.fit(obs, actions, latents)
    assert bc.train_losses == []  # no labelled row, no action loss
    assert bc.latent_losses[-1] < 0.6 * bc.latent_losses[0]
    after = policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("extractor."))
    # Nothing reaches the action head without actions (AdamW skips parameters without grads).
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("actor_mean."))
    assert bc.latent_head is not None and bc.latent_head.weight.shape == (L, SMALL.feature_dim)
    assert bc.latent_mean.shape == bc.latent_std.shape == (L,)


def test_action_loss_only_where_actions_exist() -> None:
    """Plain BC given extra action-free rows trains exactly as on the labelled rows alone."""
    obs, actions, _ = _rows(40)
    mixed = actions.copy()
    mixed[24:] = np.nan
    cfg = BCConfig(steps=20, batch_size=8, val_fraction=0.0)
    a, b = _policy(), _policy()
    BehaviourCloning(a, cfg, "cpu").fit(obs[:24], actions[:24])
    BehaviourCloning(b, cfg, "cpu").fit(obs, mixed)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_same_budget_and_head_absent_from_the_policy(tmp_path: Path) -> None:
    obs, actions, latents = _rows(64)
    actions[16:] = np.nan  # 16 labelled rows, 48 video rows
    cfg = BCConfig(steps=10, batch_size=4, val_fraction=0.0)
    plain, wam = _policy(), _policy()
    bc_plain = BehaviourCloning(plain, cfg, "cpu")
    bc_plain.fit(obs, actions)
    bc_wam = BehaviourCloning(wam, cfg, "cpu")
    bc_wam.fit(obs, actions, latents)
    # 16 labelled rows / batch 4 = 4 steps an epoch: 10 steps are 3 epochs for both methods.
    assert len(bc_plain.train_losses) == len(bc_wam.train_losses) == 3
    assert len(bc_wam.latent_losses) == 3 and bc_plain.latent_losses == []
    # The trained policy is a plain ActorCritic: same parameters, same spec, no latent head.
    assert wam.state_dict().keys() == plain.state_dict().keys() == _policy().state_dict().keys()
    assert {k: v.shape for k, v in wam.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    assert wam.spec() == plain.spec()
    assert not any("latent" in k for k in wam.state_dict())
    # Shapes at inference, and save/load equality.
    one, _ = wam.predict(obs[0].astype(np.float32))
    many, _ = wam.predict(obs[:5].astype(np.float32))
    assert one.shape == (K * A,) and many.shape == (5, K * A)
    assert np.all(np.abs(many) <= 1)
    wam.save(tmp_path / "policy")
    back = ActorCritic.load(tmp_path / "policy")
    assert all(torch.equal(back.state_dict()[k], v) for k, v in wam.state_dict().items())
    np.testing.assert_array_equal(back.predict(obs[:5].astype(np.float32))[0], many)


def test_bad_rows_are_refused() -> None:
    obs, actions, latents = _rows(8)
    half = actions.copy()
    half[0, :2] = np.nan
    with pytest.raises(ValueError, match="all finite"):
        BehaviourCloning(_policy(), BCConfig(steps=1), "cpu").fit(obs, half, latents)
    with pytest.raises(ValueError, match="pass latents"):
        BehaviourCloning(_policy(), BCConfig(steps=1), "cpu").fit(
            obs, np.full_like(actions, np.nan)
        )
    latents[0, 0] = np.inf
    with pytest.raises(ValueError, match="latent targets"):
        BehaviourCloning(_policy(), BCConfig(steps=1), "cpu").fit(obs, actions, latents)


# -- the pipeline, CLI and example ---------------------------------------------------------------


def test_encode_pairs_matches_encode() -> None:
    rla = _tiny_rla()
    obs, _, _ = _rows(5)
    nxt, _, _ = _rows(5, seed=1)
    z = encode_pairs(rla, obs, nxt, batch_size=2)
    with torch.no_grad():
        ref = rla.encode(torch.as_tensor(obs).float(), torch.as_tensor(nxt).float())
    assert z.shape == (5, 3, 4) and z.dtype == np.float32
    np.testing.assert_allclose(z, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_select_episodes(dataset: tuple[Path, Path]) -> None:
    store = EpisodeStore(dataset[0])
    sel = select_episodes(store, labelled=3, seed=1)
    train, val = store.split()
    assert len(sel.labelled) == 3 and set(sel.labelled) <= set(train)
    assert not set(sel.labelled) & set(sel.videos) and set(sel.videos) <= set(train)
    assert len(sel.labelled) + len(sel.videos) == len(train)
    assert set(sel.heldout) == {e for e in val if e.startswith("expert")}
    assert select_episodes(store, labelled=3, seed=1) == sel
    with pytest.raises(EpisodeSelectionError, match="--labelled between 1 and"):
        select_episodes(store, labelled=99)


def test_train_bc_pipeline(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    data, rla = dataset
    common = dict(data=data, encoder="tiny", labelled=2, chunk=K, steps=6, batch_size=4,
                  device="cpu")  # fmt: skip
    plain = train_bc_from_dataset(TrainBCConfig(out=tmp_path / "bc", **common))
    wam = train_bc_from_dataset(
        TrainBCConfig(out=tmp_path / "wam", rla=rla, rla_head=True, **common)
    )
    assert plain["method"] == "bc" and wam["method"] == "bc+rla"
    assert plain["labelled_episodes"] == wam["labelled_episodes"]
    assert plain["labelled_rows"] == wam["labelled_rows"] == 2 * (12 - K + 1)
    assert plain["video_rows"] == 0 and wam["video_rows"] > 0
    assert wam["train_latent_loss"] is not None and wam["rla_fingerprint"] == FP
    a, b = ActorCritic.load(tmp_path / "bc"), ActorCritic.load(tmp_path / "wam")
    assert a.spec() == b.spec() and a.state_dict().keys() == b.state_dict().keys()
    with pytest.raises(MissingRLAError, match="--rla"):
        train_bc_from_dataset(TrainBCConfig(out=tmp_path / "x", rla_head=True, **common))
    _tiny_rla("other@ffffffffffff").save_pretrained(tmp_path / "other_rla")
    with pytest.raises(EncoderMismatchError, match="train-rla"):
        train_bc_from_dataset(TrainBCConfig(out=tmp_path / "x", rla=tmp_path / "other_rla",
                                      rla_head=True, **common))  # fmt: skip


def test_cli_train_bc(dataset: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    data, rla = dataset
    base = ["train-bc", "--data", str(data), "--encoder", "tiny", "--chunk", str(K),
            "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "p")]  # fmt: skip
    assert cli([*base, "--rla-head"]) == 2
    err = capsys.readouterr().err
    assert "--rla-head needs" in err and "--rla <checkpoint>" in err and len(err.splitlines()) == 1
    assert cli([*base, "--labelled", "99"]) == 2
    assert "--labelled between" in capsys.readouterr().err
    assert cli([*base, "--labelled", "2", "--rla", str(rla), "--rla-head"]) == 0
    assert '"method": "bc+rla"' in capsys.readouterr().out
    assert (tmp_path / "p" / "model.safetensors").exists()
    assert issubclass(MissingRLAError, RLAGymError)


def test_example_runs(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "world_action_model.py"
    spec = importlib.util.spec_from_file_location("example_world_action_model", path)
    assert spec is not None and spec.loader is not None
    ex = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ex  # dataclasses look their module up by name
    spec.loader.exec_module(ex)
    data, rla = dataset
    out = ex.main(ex.Args(data=data, rla=rla, encoder="tiny", labelled=2, steps=2,
                          out=tmp_path / "ex"))  # fmt: skip
    assert set(out) == {"bc", "bc+rla"} and out["bc+rla"]["video_rows"] > 0
