"""Collection in a real simulator (dm-control reacher: the fastest renderer), resume, encode,
inspect and the CLI's error handling."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from rla_gym.cli.main import main as cli
from rla_gym.data import EpisodeStore
from rla_gym.data.collect import CollectConfig, branch_id, collect
from rla_gym.data.encode import encode_dataset
from rla_gym.data.feature_episodes import sibling_groups
from rla_gym.data.inspect import summarize, write_preview
from rla_gym.errors import EncoderMismatchError
from rla_gym.features import make_encoder

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("reacher")
    cfg = CollectConfig(
        out=root, sim="dmc", policy="expert", episodes=3, resolution=64, workers=2, max_steps=12
    )
    summary = collect(cfg, progress=False)
    assert summary["recorded"] == 3 and summary["skipped"] == 0
    return root, cfg


def test_collected_episodes_are_real(dataset):
    root, _ = dataset
    store = EpisodeStore(root)
    assert store.episode_ids() == [f"expert_{i:06d}" for i in range(3)]
    ep = store.read("expert_000000")
    assert ep.frames.shape == (13, 64, 64, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.shape == (12, 2) and np.all(np.abs(ep.actions) <= 1)
    assert ep.frames.std() > 5  # a rendered scene, not a blank image
    assert not np.array_equal(ep.frames[0], ep.frames[-1])  # the arm moved
    assert store.manifest()["sim"] == "dmc" and store.manifest()["action_dim"] == 2
    # dataset.json says what the recorded proprio holds and the body vector made from it.
    body = store.manifest()["proprio"]
    assert body["raw_fields"] == ["shoulder", "wrist", "shoulder_vel", "wrist_vel"]
    assert body["body"]["dim"] == 6 and ep.proprio.shape == (13, 4)
    # different episodes start from different seeds
    assert not np.array_equal(ep.frames[0], store.read("expert_000001").frames[0])


def test_collect_resumes_after_interruption(dataset):
    root, cfg = dataset
    store = EpisodeStore(root)
    before = store.read("expert_000000").frames
    store.episode_path("expert_000001").unlink()  # as if the run died while recording it
    (store.episode_dir / ".expert_000002.h5.abc.tmp").write_bytes(b"partial")
    summary = collect(cfg, progress=False)
    assert summary["recorded"] == 1 and summary["skipped"] == 2
    assert len(store.episode_ids()) == 3 and not list(store.episode_dir.glob(".*.tmp"))
    # the re-recorded episode is the same episode (seeded), the others were not touched
    np.testing.assert_array_equal(store.read("expert_000000").frames, before)


def test_encode_inspect_and_mismatch(dataset, tmp_path):
    root, _ = dataset
    enc = make_encoder("tiny")
    out = encode_dataset(root, enc, progress=False)
    assert out["encoded"] == 3 and out["grid"] == [4, 4]
    assert encode_dataset(root, enc, progress=False)["encoded"] == 0  # resumable: nothing left
    fe = EpisodeStore(root).load_features("expert_000000", "tiny", enc.fingerprint)
    assert fe.features.shape == (13, 16, enc.feature_dim)
    other = make_encoder("tiny", seed=1)
    with pytest.raises(EncoderMismatchError):
        encode_dataset(root, other, progress=False)
    s = summarize(root)
    assert s["episodes"] == 3 and s["features"]["tiny"]["episodes"] == 3
    mp4 = write_preview(root, tmp_path / "p.mp4", episodes=2)
    assert mp4.stat().st_size > 1000


def test_cli_reports_bad_input(tmp_path, capsys, monkeypatch):
    bad_task = ["collect", "--out", str(tmp_path / "x"), "--sim", "dmc", "--task", "nope-nope"]
    assert cli(bad_task) == 2
    err = capsys.readouterr().err
    assert "rla-gym: error: ValueError at rla_gym/sims/" in err  # what and where
    assert "RLA_GYM_DEBUG" in err
    monkeypatch.setenv("RLA_GYM_DEBUG", "1")
    with pytest.raises(ValueError, match="nope"):
        cli(bad_task)
    monkeypatch.delenv("RLA_GYM_DEBUG")
    assert cli(["encode", "--data", str(tmp_path / "missing")]) == 2
    assert "not an rla-gym dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["collect", "--out", str(tmp_path / "x"), "--sim", "gazebo"])


def test_cli_inspect(dataset, capsys):
    root, _ = dataset
    assert cli(["inspect", "--data", str(root), "--no-video"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["policies"]["expert"]["episodes"] == 3


@pytest.mark.parametrize(
    ("sim", "module"), [("dmc", "dm_control"), ("robosuite", "robosuite"), ("libero", "libero")]
)
def test_missing_simulator_extra_names_the_fix(sim, module, monkeypatch):
    from rla_gym.errors import MissingExtraError
    from rla_gym.sims import make_sim

    # A None entry in sys.modules makes `import module` raise ImportError, as if not installed.
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError, match=r'pip install "rla-gym\[sim\]"'):
        make_sim(sim)


class _TowardsCentre:
    """A feature policy that ignores its input: a constant chunk (picklable for spawn workers)."""

    def __init__(self, k: int = 4, a: int = 2) -> None:
        self.k, self.a = k, a

    def __call__(self, features: np.ndarray) -> np.ndarray:
        assert features.ndim == 2  # (N, D) patch features from the real pipeline
        return np.full(self.k * self.a, 0.5, np.float32)


def test_real_sim_evaluation(tmp_path):
    from rla_gym.evaluation.real import RealEvalConfig, evaluate_in_sim

    cfg = RealEvalConfig(
        sim="dmc",
        resolution=64,
        encoder="tiny",
        episodes=3,
        chunk=4,
        max_steps=12,
        workers=2,
        video_dir=tmp_path,
        videos=1,
    )
    out = evaluate_in_sim(_TowardsCentre, cfg, progress=False)
    assert out["episodes"] == 3 and [r["index"] for r in out["rows"]] == [0, 1, 2]
    assert all(r["length"] <= 12 for r in out["rows"])
    lo, hi = out["wilson95"]
    assert 0.0 <= lo <= out["success_rate"] <= hi <= 1.0
    assert len(out["videos"]) == 1 and (tmp_path / out["videos"][0].split("/")[-1]).exists()


def test_branch_collection_restores_exactly_and_resumes(tmp_path):
    """Counterfactual branches: each starts from the trunk's exact state, with other actions."""
    cfg = CollectConfig(
        out=tmp_path, sim="dmc", policy="branch", episodes=2, resolution=64, workers=1,
        max_steps=12, branch_every=4, branch_steps=4, branch_noise=(0.1, 0.3),
    )  # fmt: skip
    first = collect(cfg, progress=False)
    assert first["recorded"] == 2
    store = EpisodeStore(tmp_path)
    # Points at steps 0, 4, 8 of the 12-step trunks, three variants each, plus the trunk.
    want = [branch_id(s, j) for s in range(2) for j in range(10)]
    assert store.episode_ids() == sorted(want) and branch_id(1, 0) == "branch_001000"
    trunk = store.read(branch_id(0, 0))
    assert trunk.meta["branch_variants"] == ["noise0.1", "noise0.3", "random"]
    for j in range(1, 10):
        ep = store.read(branch_id(0, j))
        t = ep.meta["branch_step"]
        assert t == 4 * ((j - 1) // 3) and ep.meta["branch_of"] == "branch_000000"
        assert ep.length == 4 and ep.frames.shape == (5, 64, 64, 3)
        np.testing.assert_array_equal(ep.frames[0], trunk.frames[t])  # the restored state
        assert not np.allclose(ep.actions, trunk.actions[t : t + 4])  # other actions ...
        assert not np.array_equal(ep.frames[-1], trunk.frames[t + 4])  # ... another outcome
    # Interrupted inside source 1: its trunk (the done mark) and one branch are missing.
    kept = store.episode_path(branch_id(1, 5)).stat().st_mtime_ns
    lost = store.read(branch_id(1, 7)).frames
    store.episode_path(branch_id(1, 0)).unlink()
    store.episode_path(branch_id(1, 7)).unlink()
    again = collect(cfg, progress=False)
    assert again["recorded"] == 1 and again["skipped"] == 1
    assert store.episode_ids() == sorted(want)
    np.testing.assert_array_equal(store.read(branch_id(1, 7)).frames, lost)  # same seed, same
    assert store.episode_path(branch_id(1, 5)).stat().st_mtime_ns == kept  # not written again
    # The world model's sibling groups: per branch point, the trunk's window and its branches.
    ids = [i for i in store.episode_ids() if i != branch_id(1, 4)]  # as if in validation
    groups = sibling_groups(tmp_path, ids)
    assert len(groups) == 6
    assert groups[0].tolist() == [[0, 0, 4], [1, 0, 4], [2, 0, 4], [3, 0, 4]]
    assert groups[2].tolist() == [[0, 8, 4], [7, 0, 4], [8, 0, 4], [9, 0, 4]]
    assert groups[4].tolist() == [[10, 4, 4], [14, 0, 4], [15, 0, 4]]  # one branch held out
    assert sibling_groups(tmp_path, ids[1:10]) != []  # without its trunk: branches alone


@pytest.mark.parametrize(
    "bad",
    [{"branch_noise": (0.0,)}, {"branch_every": 0}, {"episodes": 1001}, {"workers": 0}],
)
def test_branch_settings_out_of_range(tmp_path, bad):
    with pytest.raises(ValueError):
        CollectConfig(out=tmp_path, sim="dmc", policy="branch", **bad)
