"""``rla-gym record``: a feature policy's real episodes written as a dataset (dm-control reacher,
the embedded bundle's base policy and encoder), resumed, and refused on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rla_gym.agents import ActorCritic, SpaceMismatchError
from rla_gym.cli.main import main as cli
from rla_gym.data import EpisodeStore
from rla_gym.envs.artifacts import ASSETS_DIR
from rla_gym.evaluation.record import RecordConfig, record_policy
from rla_gym.features import make_encoder
from rla_gym.utils import load_json

pytestmark = pytest.mark.sim
BUNDLE = ASSETS_DIR / "dmc-reacher"


def test_recorded_episodes_are_the_policy_acting_on_its_encoded_frames(tmp_path: Path) -> None:
    pytest.importorskip("dm_control")
    cfg = RecordConfig(out=tmp_path, bundle="dmc-reacher", name="cl-base", episodes=2,
                       workers=1, max_steps=16)  # fmt: skip
    summary = record_policy(cfg, progress=False)
    assert summary["recorded"] == 2 and summary["total_steps"] == 32
    store = EpisodeStore(tmp_path)
    assert store.episode_ids() == ["cl-base_000000", "cl-base_000001"]
    assert store.manifest()["sim"] == "dmc" and "proprio" in store.manifest()
    ep = store.read("cl-base_000000")
    assert ep.frames.shape == (17, 128, 128, 3) and ep.actions.shape == (16, 2)
    assert ep.meta["policy"] == "cl-base" and ep.meta["seed"] == cfg.seed
    # Each chunk is the base's answer to the frame reached when it was asked (reacher's
    # actions are already in simulator units).
    policy = ActorCritic.load(BUNDLE / "policy").eval()
    enc = make_encoder(load_json(BUNDLE / "manifest.json")["encoder"])
    for t in (0, 8):
        chunk = policy.predict(enc.encode(ep.frames[t][None]), deterministic=True)[0][0]
        assert np.allclose(ep.actions[t : t + 8].reshape(-1), np.clip(chunk, -1, 1), atol=1e-5)
    # A perturbed policy from the same seeds acts otherwise; a re-run records only what is new.
    noisy = RecordConfig(out=tmp_path, bundle=str(BUNDLE), name="cl-n05", noise=0.5,
                         episodes=2, workers=1, max_steps=16)  # fmt: skip
    assert record_policy(noisy, progress=False)["recorded"] == 2
    assert not np.allclose(store.read("cl-n05_000000").actions, ep.actions)
    again = record_policy(noisy, progress=False)
    assert again["recorded"] == 0 and again["skipped"] == 2


def test_bad_input_is_refused_before_any_simulator_starts(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="episode id"):
        RecordConfig(out=tmp_path, name="Bad Name")
    with pytest.raises(ValueError, match="noise"):
        record_policy(RecordConfig(out=tmp_path, bundle="dmc-reacher", noise=-1.0))
    lift_policy = ASSETS_DIR / "robosuite-lift" / "policy"
    with pytest.raises(SpaceMismatchError, match="chunks of K=8"):
        record_policy(RecordConfig(out=tmp_path, bundle="dmc-reacher", policy=lift_policy))
    assert not (tmp_path / "episodes").exists()
    code = cli(["record", "--out", str(tmp_path), "--bundle", "dmc-reacher", "--policy",
                str(lift_policy)])  # fmt: skip
    assert code == 2 and "SpaceMismatchError" in capsys.readouterr().err
