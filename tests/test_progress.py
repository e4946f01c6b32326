"""The learned progress / success head: targets, training on real-format data, resume, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.data.episodes import Episode, EpisodeStore
from rla_gym.errors import EncoderMismatchError
from rla_gym.features import make_encoder
from rla_gym.reward.progress import ProgressHead, progress_targets
from rla_gym.reward.train_progress import TrainProgressConfig, train_progress_head
from rla_gym.utils.stats import roc_auc
from rla_gym.utils.training import TrainerConfig

RES, T = 32, 24


def test_progress_targets_and_auc() -> None:
    ok = np.zeros(6, bool)
    ok[4:] = True
    target, bound = progress_targets(ok)
    np.testing.assert_allclose(target, [0, 0.25, 0.5, 0.75, 1, 1])
    assert np.isnan(bound).all()
    failed, bound = progress_targets(np.zeros(4, bool))
    assert failed[0] == 0 and np.isnan(failed[1:]).all()
    assert np.isnan(bound[0]) and np.allclose(bound[1:], 0.8)
    # Decayed steps to success: a property of the frame, not of the episode's length.
    target, bound = progress_targets(ok, "steps", decay_steps=2.0)
    np.testing.assert_allclose(target, np.exp(-np.array([4, 3, 2, 1, 0, 0]) / 2.0), rtol=1e-6)
    assert np.isnan(bound).all()
    failed, bound = progress_targets(np.zeros(4, bool), "steps", decay_steps=2.0)
    assert np.isnan(failed).all()  # frame t of a failed T = 3 is >= 4 - t steps from success
    np.testing.assert_allclose(bound, np.exp(-np.array([4, 3, 2, 1]) / 2.0), rtol=1e-6)
    with pytest.raises(ValueError, match="target must be"):
        progress_targets(ok, "time")  # type: ignore[arg-type]
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.ones(3), np.ones(3))


def _dataset(root: Path) -> None:
    """A square walks right; the episode is solved once it crosses the right third."""
    store = EpisodeStore(root)
    store.init_manifest(
        {
            "sim": "dmc",
            "task": "synthetic",
            "resolution": RES,
            "action_dim": 1,
            "action_low": [-1.0],
            "action_high": [1.0],
        }
    )
    enc = make_encoder("tiny")
    store.begin_features("tiny", enc.fingerprint)
    rng = np.random.default_rng(0)
    for i in range(16):
        speed = rng.uniform(0.3, 1.0) if i % 3 else rng.uniform(-0.2, 0.15)  # every 3rd fails
        x = np.clip(2 + speed * np.arange(T + 1), 0, RES - 6).astype(int)
        frames = np.zeros((T + 1, RES, RES, 3), np.uint8)
        for t, xx in enumerate(x):
            frames[t, 12:18, xx : xx + 6] = 255
        success = x >= 20
        eid = store.episode_id("expert" if i % 3 else "noisy", i)
        store.write(
            eid,
            Episode(
                frames,
                np.full((T, 1), speed, np.float32),
                np.zeros((T + 1, 1), np.float32),
                np.zeros(T, np.float32),
                success,
                {"policy": eid.split("_")[0]},
            ),
        )
        store.write_features(eid, "tiny", enc.encode(frames), enc.fingerprint, (2, 2))


def test_progress_head_learns_success_and_resumes(tmp_path: Path, one_torch_thread: None) -> None:
    _dataset(tmp_path / "data")
    trainer = TrainerConfig(
        steps=200,
        batch_size=64,
        learning_rate=3e-3,
        val_every=200,
        ckpt_every=100,
        progress=False,
        tensorboard=False,
        device="cpu",
        stop_at=100,
    )
    cfg = TrainProgressConfig(
        data=str(tmp_path / "data"),
        encoder="tiny",
        out=str(tmp_path / "head"),
        val_fraction=0.3,
        trainer=trainer,
    )
    first = train_progress_head(cfg)
    assert first.step == 100
    import dataclasses

    done = train_progress_head(
        dataclasses.replace(cfg, trainer=dataclasses.replace(trainer, stop_at=None))
    )
    assert done.resumed_from == 100 and done.step == 200
    assert done.val_metrics["val/success_auc"] > 0.9
    assert done.val_metrics["val/start_false_positive_rate"] == 0.0
    fp = make_encoder("tiny").fingerprint
    head = ProgressHead.from_pretrained(done.checkpoint, expected_fingerprint=fp)
    p, logit = head(torch.zeros(2, head.config.num_tokens, head.config.feature_dim))
    assert p.shape == logit.shape == (2,) and bool(((p >= 0) & (p <= 1)).all())
    with pytest.raises(EncoderMismatchError, match="trained on features of"):
        ProgressHead.from_pretrained(done.checkpoint, expected_fingerprint="other@123")
    with pytest.raises(ValueError, match="expects features"):
        head(torch.zeros(2, 3, 5))


def test_steps_target_head_rises_towards_success(tmp_path: Path, one_torch_thread: None) -> None:
    """A head trained on the decayed-steps target reads solved frames above start frames, and
    its checkpoint says what its progress means."""
    _dataset(tmp_path / "data")
    trainer = TrainerConfig(steps=150, batch_size=64, learning_rate=3e-3, val_every=150,
                            ckpt_every=150, progress=False, tensorboard=False,
                            device="cpu")  # fmt: skip
    cfg = TrainProgressConfig(data=str(tmp_path / "data"), encoder="tiny",
                              out=str(tmp_path / "head"), val_fraction=0.3, trainer=trainer,
                              target="steps", decay_steps=4.0)  # fmt: skip
    done = train_progress_head(cfg)
    head = ProgressHead.from_pretrained(done.checkpoint)
    assert (head.config.target, head.config.decay_steps) == ("steps", 4.0)
    store = EpisodeStore(tmp_path / "data")
    starts, solved = [], []
    for eid in store.episode_ids():
        fe = store.load_features(eid, "tiny")
        with torch.no_grad():
            p, _ = head(torch.from_numpy(fe.features).float())
        starts.append(float(p[0]))
        solved += p[torch.from_numpy(fe.success)].tolist()
    assert solved and np.mean(solved) > np.mean(starts) + 0.3
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        type(head.config)(**{**head.config.to_dict(), "decay_steps": 0.0})
