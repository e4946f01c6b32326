"""The progress / success head that also reads the robot's body: learning what only the body
shows, checkpoints with and without ``proprio_fields``, and the inputs it refuses (tiny, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.data.episodes import Episode, EpisodeStore
from rla_gym.data.proprio import body_spec
from rla_gym.reward import ProgressHead, ProgressHeadConfig
from rla_gym.reward.progress import head_inputs
from rla_gym.reward.train_progress import TrainProgressConfig, train_progress_head
from rla_gym.utils.training import TrainerConfig, TrainResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, N, D = 24, 4, 8
FIELDS = body_spec("dmc").fields
FP = "synthetic@0"


def _dataset(root: Path, sim: str = "dmc", episodes: int = 24) -> None:
    """Reacher-like episodes whose features are noise: only the body says how far along they are.

    The shoulder turns at a constant speed from about -0.75 rad; an episode is solved once the
    angle passes 1 rad (two in three turn fast enough). So the steps until success follow from
    the body (angle and velocity), while the patch features are drawn independently of it.
    """
    store = EpisodeStore(root)
    store.init_manifest({"sim": sim, "task": "synthetic", "resolution": 8, "action_dim": 1,
                         "action_low": [-1.0], "action_high": [1.0]})  # fmt: skip
    store.begin_features("tiny", FP)
    rng = np.random.default_rng(0)
    for i in range(episodes):
        speed = rng.uniform(0.08, 0.12) if i % 3 else rng.uniform(-0.05, 0.03)
        q = rng.uniform(-1.0, -0.5) + speed * np.arange(T + 1)
        proprio = np.stack([q, np.zeros_like(q), np.full_like(q, speed), np.zeros_like(q)], 1)
        eid = store.episode_id("expert" if i % 3 else "noisy", i)
        episode = Episode(np.zeros((T + 1, 8, 8, 3), np.uint8), np.zeros((T, 1), np.float32),
                          proprio.astype(np.float32), np.zeros(T, np.float32), q >= 1.0,
                          {"policy": eid.split("_")[0]})  # fmt: skip
        store.write(eid, episode)
        features = rng.standard_normal((T + 1, N, D)).astype(np.float32)
        store.write_features(eid, "tiny", features, FP, (2, 2))


def _train(data: Path, out: Path, proprio: bool) -> TrainResult:
    trainer = TrainerConfig(steps=300, batch_size=64, learning_rate=3e-3, val_every=300,
                            ckpt_every=300, progress=False, tensorboard=False,
                            device="cpu")  # fmt: skip
    cfg = TrainProgressConfig(data=str(data), encoder="tiny", out=str(out), val_fraction=0.3,
                              target="steps", decay_steps=4.0, token_dim=8, hidden=64,
                              proprio=proprio, trainer=trainer)  # fmt: skip
    return train_progress_head(cfg)


def test_body_head_learns_what_only_the_body_shows(tmp_path: Path) -> None:
    """Same data, same split: the head with the body reads progress and success; the head on
    the (uninformative) features alone cannot. Its checkpoint keeps the body's fields and
    standardisation."""
    _dataset(tmp_path / "data")
    body = _train(tmp_path / "data", tmp_path / "body", proprio=True)
    feats = _train(tmp_path / "data", tmp_path / "feats", proprio=False)
    mb, mf = body.val_metrics, feats.val_metrics
    assert mb["val/success_auc"] > 0.95 and mf["val/success_auc"] < 0.8
    # Measured: progress MAE 0.03 with the body vs 0.41 without, success AUC 1.00 vs 0.51.
    assert mb["val/progress_mae"] < 0.25 * mf["val/progress_mae"]
    assert mb["val/start_false_positive_rate"] == 0.0

    head = ProgressHead.from_pretrained(body.checkpoint, expected_fingerprint=FP)
    assert head.config.proprio_fields == FIELDS
    raw = json.loads((Path(body.checkpoint) / "config.json").read_text())
    assert raw["proprio_fields"] == list(FIELDS)
    # The standardisation was fitted on the training rows (velocity's mean is not 0) and saved.
    assert float(head.proprio_mean[4]) > 0.01 and bool((head.proprio_std > 0).all())
    assert ProgressHead.from_pretrained(feats.checkpoint).config.proprio_fields == ()


def tiny_head(**kw: object) -> ProgressHead:
    """An untrained head on this file's tiny features (also test_progress_goal's)."""
    torch.manual_seed(0)
    cfg = ProgressHeadConfig(feature_dim=D, num_tokens=N, encoder_fingerprint=FP, token_dim=8,
                             hidden=16, **kw)  # type: ignore[arg-type]  # fmt: skip
    return ProgressHead(cfg).eval()


def test_checkpoints_with_and_without_the_body(tmp_path: Path) -> None:
    s, p = torch.randn(5, N, D), torch.randn(5, len(FIELDS))
    head = tiny_head(proprio_fields=list(FIELDS))  # a JSON list becomes the config's tuple
    assert head.config.proprio_fields == FIELDS
    head.fit_body_stats(np.random.default_rng(0).normal(2.0, 3.0, (50, len(FIELDS))))
    head.save_pretrained(tmp_path / "body")
    again = ProgressHead.from_pretrained(tmp_path / "body")
    torch.testing.assert_close(again.proprio_mean, head.proprio_mean)
    with torch.no_grad():
        torch.testing.assert_close(again(s, p), head(s, p))
        # The body changes the answer (the head reads it).
        assert not torch.allclose(head(s, p)[0], head(s, p + 1.0)[0])

    # A checkpoint written before heads read the body (no proprio_fields in config.json) loads
    # as the same features-only network it was.
    old = tiny_head()
    layers = ("norm", "token", "mlp.0", "mlp.2", "mlp.4")
    assert set(old.state_dict()) == {f"{m}.{w}" for m in layers for w in ("weight", "bias")}
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["proprio_fields"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = ProgressHead.from_pretrained(tmp_path / "old", expected_fingerprint=FP)
    assert loaded.config.proprio_fields == ()
    with torch.no_grad():
        torch.testing.assert_close(loaded(s), old(s))


def test_bad_body_inputs_are_refused(tmp_path: Path) -> None:
    s = torch.zeros(3, N, D)
    body, feats = tiny_head(proprio_fields=FIELDS), tiny_head()
    with pytest.raises(ValueError, match=r"also reads the body.*shoulder_sin"):
        body(s)
    with pytest.raises(ValueError, match=r"6 entries per row.*shoulder_sin"):
        body(s, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        body(s, torch.full((3, 6), float("nan")))
    with pytest.raises(ValueError, match=r"must be \(3, 6\)"):
        body(s, torch.zeros(2, 6))
    with pytest.raises(ValueError, match="features only"):
        feats(s, torch.zeros(3, 6))
    with pytest.raises(ValueError, match="no body to fit"):
        feats.fit_body_stats(np.zeros((4, 6)))
    with pytest.raises(ValueError, match="one row per frame"):
        head_inputs([(np.zeros((4, N, D)), np.zeros(4, bool))], bodies=[np.zeros((3, 6))])
    # A dataset whose simulator has no body vector cannot train a body head.
    _dataset(tmp_path / "data", sim="atari", episodes=3)
    cfg = TrainProgressConfig(data=str(tmp_path / "data"), encoder="tiny",
                              out=str(tmp_path / "h"), proprio=True)  # fmt: skip
    with pytest.raises(ValueError, match=r"--proprio.*no body vector is defined for sim 'atari'"):
        train_progress_head(cfg)
