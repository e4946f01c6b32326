"""Episode store: round trips, atomic writes, corruption, splits, feature fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from rla_gym.data import Episode, EpisodeStore
from rla_gym.errors import CorruptFileError, EncoderMismatchError, RLAGymError
from rla_gym.utils.io import atomic_path


def make_episode(t: int = 5, res: int = 16, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        frames=rng.integers(0, 256, (t + 1, res, res, 3), dtype=np.uint8),
        actions=rng.uniform(-1, 1, (t, 7)).astype(np.float32),
        proprio=rng.normal(size=(t + 1, 9)).astype(np.float32),
        rewards=np.zeros(t, np.float32),
        success=np.r_[np.zeros(t, bool), True],
        meta={"sim": "test", "task": "t", "seed": seed, "policy": "expert"},
        init_state=rng.normal(size=11),
    )


@pytest.fixture
def store(tmp_path):
    s = EpisodeStore(tmp_path / "ds")
    s.init_manifest({"sim": "test", "task": "t", "resolution": 16, "action_dim": 7})
    return s


def test_round_trip(store):
    ep = make_episode()
    store.write("expert_000000", ep)
    back = store.read("expert_000000")
    for k in ("frames", "actions", "proprio", "rewards", "success", "init_state"):
        np.testing.assert_array_equal(getattr(back, k), getattr(ep, k))
    assert back.meta["seed"] == 0 and back.meta["sim"] == "test"
    assert store.episode_ids() == ["expert_000000"]
    assert store.read("expert_000000", frames=False).frames.shape[0] == 6


def test_episode_lengths_are_checked():
    ep = make_episode()
    with pytest.raises(ValueError, match="frames has length"):
        Episode(ep.frames[:-1], ep.actions, ep.proprio, ep.rewards, ep.success)


def test_interrupted_write_leaves_nothing(store):
    store.write("expert_000000", make_episode())
    target = store.episode_path("expert_000001")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half an episode")
        raise KeyboardInterrupt
    assert not target.exists()
    assert store.episode_ids() == ["expert_000000"]
    assert not list(store.episode_dir.glob(".*.tmp"))


def test_truncated_file_is_a_clear_error(store):
    path = store.write("noisy_000003", make_episode())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError, match="rla-gym collect"):
        store.read("noisy_000003")


def test_missing_episode_and_bad_id(store):
    with pytest.raises(KeyError):
        store.read("expert_000042")
    with pytest.raises(ValueError, match="bad episode id"):
        store.episode_path("../evil")


def test_manifest_mismatch_refuses_mixing(store):
    with pytest.raises(RLAGymError, match="resolution"):
        store.init_manifest({"sim": "test", "task": "t", "resolution": 32, "action_dim": 7})
    with pytest.raises(RLAGymError, match="not an rla-gym dataset"):
        EpisodeStore(store.root / "nope").manifest()


def test_split_is_deterministic_and_stable(store):
    ids = [f"expert_{i:06d}" for i in range(40)]
    train, val = store.split(0.25, seed=1, ids=ids)
    assert sorted(train + val) == ids and not set(train) & set(val)
    assert 3 <= len(val) <= 20
    assert store.split(0.25, seed=1, ids=ids) == (train, val)
    # Adding episodes never moves an existing one across the split.
    train2, val2 = store.split(0.25, seed=1, ids=[*ids, "noisy_000000", "noisy_000001"])
    assert set(val) <= set(val2) and set(train) <= set(train2)
    assert store.split(0.25, seed=2, ids=ids) != (train, val)
    assert len(store.split(0.1, ids=ids[:2])[1]) == 1


def test_features_fingerprint_guard(store):
    store.write("expert_000000", make_episode(t=5))
    feats = np.random.default_rng(0).normal(size=(6, 4, 8)).astype(np.float32)
    store.begin_features("enc", "enc@aaa")
    store.write_features("expert_000000", "enc", feats, "enc@aaa", (2, 2))
    fe = store.load_features("expert_000000", "enc", expected_fingerprint="enc@aaa")
    np.testing.assert_allclose(fe.features, feats, atol=2e-3)
    assert fe.actions.shape == (5, 7) and fe.grid == (2, 2)
    with pytest.raises(EncoderMismatchError):
        store.load_features("expert_000000", "enc", expected_fingerprint="enc@bbb")
    with pytest.raises(EncoderMismatchError, match="--overwrite"):
        store.begin_features("enc", "enc@bbb")
    store.begin_features("enc", "enc@bbb", overwrite=True)
    with pytest.raises(KeyError, match="rla-gym encode"):
        store.load_features("expert_000000", "enc")


def test_feature_length_mismatch_is_corrupt(store):
    store.write("expert_000000", make_episode(t=5))
    store.begin_features("enc", "enc@aaa")
    store.write_features("expert_000000", "enc", np.zeros((4, 4, 8)), "enc@aaa", (2, 2))
    with pytest.raises(CorruptFileError):
        store.load_features("expert_000000", "enc")
