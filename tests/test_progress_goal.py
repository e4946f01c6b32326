"""The ``"body_goal"`` progress head: it reads the goal body off the scene and scores bodies by
their distance to it; labels, configs it refuses, checkpoints (tiny, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_progress_body import tiny_head

from rla_gym.data.episodes import Episode, EpisodeStore
from rla_gym.data.proprio import body_spec, body_vector
from rla_gym.reward import ProgressHead
from rla_gym.reward.progress import goal_targets, head_inputs
from rla_gym.reward.train_progress import TrainProgressConfig, train_progress_head
from rla_gym.utils.stats import spearman
from rla_gym.utils.training import TrainerConfig, TrainResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, N, D = 16, 4, 8
FIELDS = body_spec("dmc").fields
ANGLES = FIELDS[:4]  # shoulder / wrist sin and cos: where the arm is, not how fast it moves
FP = "synthetic@0"


def _scene(goal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(N, D)`` features of a scene whose target needs joint angles ``goal (2,)``: token 0
    shows the goal (as the frame shows reacher's target sphere), the rest is noise."""
    s = rng.standard_normal((N, D)).astype(np.float32)
    s[0, :4] = 2.0 * np.array([np.sin(goal[0]), np.cos(goal[0]), np.sin(goal[1]), np.cos(goal[1])])
    return s


def _dataset(root: Path, episodes: int = 200) -> None:
    """Reacher-like episodes, each with its own goal pose: the arm turns from a random pose
    towards the goal (two in three) and is solved once both joints are within 0.1 rad of it, or
    towards a wrong pose (every third, never solved)."""
    store = EpisodeStore(root)
    store.init_manifest({"sim": "dmc", "task": "synthetic", "resolution": 8, "action_dim": 1,
                         "action_low": [-1.0], "action_high": [1.0]})  # fmt: skip
    store.begin_features("tiny", FP)
    rng = np.random.default_rng(0)
    for i in range(episodes):
        goal, start = rng.uniform(-2, 2, 2), rng.uniform(-2, 2, 2)
        aim = goal if i % 3 else -goal + 1.5
        frac = np.minimum(np.arange(T + 1) / rng.uniform(8, 14), 1.0)[:, None]
        q = start + frac * (aim - start)
        vel = np.gradient(q, axis=0)
        ok = (np.abs(q - goal) < 0.1).all(1)
        eid = store.episode_id("expert" if i % 3 else "noisy", i)
        episode = Episode(np.zeros((T + 1, 8, 8, 3), np.uint8), np.zeros((T, 1), np.float32),
                          np.concatenate([q, vel], 1).astype(np.float32), np.zeros(T, np.float32),
                          ok, {"policy": eid.split("_")[0]})  # fmt: skip
        store.write(eid, episode)
        features = np.stack([_scene(goal, rng) for _ in range(T + 1)])
        store.write_features(eid, "tiny", features, FP, (2, 2))


def _train(data: Path, out: Path, **kw: object) -> TrainResult:
    trainer = TrainerConfig(steps=1000, batch_size=64, learning_rate=3e-3, val_every=1000,
                            ckpt_every=1000, progress=False, tensorboard=False,
                            device="cpu")  # fmt: skip
    cfg = TrainProgressConfig(data=str(data), encoder="tiny", out=str(out), val_fraction=0.3,
                              token_dim=8, hidden=64, trainer=trainer, **kw)  # type: ignore[arg-type]  # fmt: skip
    return train_progress_head(cfg)


def test_goal_head_learns_the_goal_and_ranks_bodies_by_it(tmp_path: Path) -> None:
    """Trained through ``train-progress``: held-out goals are read off the scene far better than
    their mean, and among bodies in one new scene the closer to its goal score higher."""
    _dataset(tmp_path / "data")
    result = _train(tmp_path / "data", tmp_path / "goal", proprio=True, target="body_goal",
                    goal_fields=ANGLES, goal_scale=0.5)  # fmt: skip
    m = result.val_metrics
    # Measured: goal error 0.30 against 1.82 for the mean goal.
    assert m["val/goal_error"] < 0.25 * m["val/goal_error_of_mean"]
    assert "val/progress_mae" not in m and m["val/success_auc"] > 0.8

    head = ProgressHead.from_pretrained(result.checkpoint, expected_fingerprint=FP)
    assert (head.config.target, head.config.goal_fields) == ("body_goal", ANGLES)
    rng = np.random.default_rng(1)
    rhos = []
    for _ in range(8):
        goal = rng.uniform(-2, 2, 2)
        offsets = rng.uniform(0, 2.0, 12)
        turn = rng.standard_normal((12, 2))
        q = goal + offsets[:, None] * turn / np.linalg.norm(turn, axis=1, keepdims=True)
        raw = np.concatenate([q, rng.normal(0, 0.1, (12, 2))], 1)  # speeds do not count
        s = torch.from_numpy(np.stack([_scene(goal, rng)] * 12))
        with torch.no_grad():
            progress, _ = head(s, torch.from_numpy(body_vector("dmc", raw)))
        assert bool(((progress > 0) & (progress <= 1)).all())
        rhos.append(spearman(progress.numpy(), -offsets))
    # Measured: 0.96 mean Spearman.
    assert np.mean(rhos) > 0.75


def test_goal_labels() -> None:
    ok = np.array([False, False, True, True, False])
    body = np.arange(10, dtype=np.float32).reshape(5, 2)
    # The last solved frame by default (where the policy settled), or the first.
    np.testing.assert_array_equal(goal_targets(ok, body), np.tile([6.0, 7.0], (5, 1)))
    first = goal_targets(ok, body, "first_success")
    np.testing.assert_array_equal(first, np.tile([4.0, 5.0], (5, 1)))
    assert np.isnan(goal_targets(np.zeros(5, bool), body)).all()
    with pytest.raises(ValueError, match="goal frame must be"):
        goal_targets(ok, body, "middle")  # type: ignore[arg-type]
    episodes = [(np.zeros((5, N, D)), ok), (np.zeros((5, N, D)), np.zeros(5, bool))]
    rows = head_inputs(episodes, "body_goal", bodies=[body, body + 1])
    assert set(rows) == {"s", "success", "proprio", "goal"}
    assert np.isfinite(rows["goal"][:5]).all() and np.isnan(rows["goal"][5:]).all()
    with pytest.raises(ValueError, match="pass bodies"):
        head_inputs(episodes, "body_goal")


def test_bad_goal_configs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"body_goal.*proprio_fields"):
        tiny_head(target="body_goal")
    with pytest.raises(ValueError, match="goal_fields must be distinct fields of the body"):
        tiny_head(target="body_goal", proprio_fields=FIELDS, goal_fields=("elbow_sin",))
    with pytest.raises(ValueError, match="goal_fields only apply to target='body_goal'"):
        tiny_head(target="steps", proprio_fields=FIELDS, goal_fields=ANGLES)
    with pytest.raises(ValueError, match="goal_scale must be > 0"):
        tiny_head(target="body_goal", proprio_fields=FIELDS, goal_scale=0.0)
    with pytest.raises(ValueError, match="target must be one of"):
        tiny_head(target="goal")
    with pytest.raises(ValueError, match="predicts no goal body"):
        tiny_head(proprio_fields=FIELDS).predict_goal(torch.zeros(2, N, D))
    head = tiny_head(target="body_goal", proprio_fields=FIELDS)
    with pytest.raises(ValueError, match="trains on goal bodies"):
        head.loss(torch.zeros(2, N, D), None, torch.zeros(2), proprio=torch.zeros(2, 6))
    # Refused before any features are loaded.
    _dataset(tmp_path / "data", episodes=2)
    with pytest.raises(ValueError, match=r"--target body_goal.*--proprio"):
        _train(tmp_path / "data", tmp_path / "h", target="body_goal")
    with pytest.raises(ValueError, match=r"--target body_goal.*goal_fields"):
        _train(tmp_path / "data", tmp_path / "h", proprio=True, target="body_goal",
               goal_fields=("shoulder_sin", "tip_x"))  # fmt: skip


def test_goal_head_round_trip(tmp_path: Path) -> None:
    head = tiny_head(target="body_goal", proprio_fields=list(FIELDS), goal_fields=list(ANGLES),
                 goal_scale=0.7)  # JSON lists become the config's tuples  # fmt: skip
    head.fit_body_stats(np.random.default_rng(0).normal(0.5, 2.0, (50, len(FIELDS))))
    head.save_pretrained(tmp_path / "goal")
    raw = json.loads((tmp_path / "goal" / "config.json").read_text())
    assert (raw["target"], raw["goal_fields"]) == ("body_goal", list(ANGLES))
    assert raw["goal_scale"] == 0.7
    again = ProgressHead.from_pretrained(tmp_path / "goal")
    assert "goal_idx" not in again.state_dict()  # derived from the config, not stored
    s, p = torch.randn(5, N, D), torch.randn(5, len(FIELDS))
    with torch.no_grad():
        torch.testing.assert_close(again(s, p), head(s, p))
        torch.testing.assert_close(again.predict_goal(s), head.predict_goal(s))
        # Velocities are not goal fields: the progress ignores them, the success logit does not.
        moved = p.clone()
        moved[:, 4:] += 1.0
        torch.testing.assert_close(head(s, moved)[0], head(s, p)[0])
        assert not torch.allclose(head(s, moved)[1], head(s, p)[1])
    # A head saved before goal heads existed (no goal keys) loads as the same network.
    old = tiny_head(target="steps", proprio_fields=FIELDS)
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["goal_fields"], config["goal_scale"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = ProgressHead.from_pretrained(tmp_path / "old")
    assert not any(k.startswith("goal") for k in loaded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(s, p), old(s, p))


def _fingertip(q: np.ndarray) -> np.ndarray:
    """Reacher's fingertip ``(..., 2)`` at joint angles ``q (..., 2)`` (links of 0.12 m)."""
    return 0.12 * np.stack([np.cos(q[..., 0]) + np.cos(q.sum(-1)),
                            np.sin(q[..., 0]) + np.sin(q.sum(-1))], -1)  # fmt: skip


def test_effector_goal_head_reads_a_place_not_a_pose(tmp_path: Path) -> None:
    """``goal_space="effector"``: the goal is where the fingertip must be. Trained through
    ``train-progress``, it reads held-out goals off the scene; the two poses that put the
    fingertip at one place (elbow bent either way) score the same, and closer places score
    higher."""
    _dataset(tmp_path / "data")
    result = _train(tmp_path / "data", tmp_path / "eff", proprio=True, target="body_goal",
                    goal_space="effector")  # fmt: skip
    m = result.val_metrics
    # Measured: goal error 0.31 against 1.28 for the mean goal (standardised fingertip units).
    assert m["val/goal_error"] < 0.4 * m["val/goal_error_of_mean"]
    head = ProgressHead.from_pretrained(result.checkpoint, expected_fingerprint=FP)
    assert head.config.goal_space == "effector" and head.predict_goal(
        torch.zeros(1, N, D)
    ).shape == (1, 2)
    rng = np.random.default_rng(2)
    rhos = []
    for _ in range(8):
        goal = rng.uniform(-2, 2, 2)
        s = torch.from_numpy(np.stack([_scene(goal, rng)] * 12))
        q = goal + rng.uniform(-1.5, 1.5, (12, 2))
        # The mirrored pose: the same fingertip with the elbow bent the other way.
        mirror = np.stack([q[:, 0] + q[:, 1], -q[:, 1]], 1)
        np.testing.assert_allclose(_fingertip(mirror), _fingertip(q), atol=1e-9)
        with torch.no_grad():
            still = np.zeros((12, 2))
            bodies = [torch.from_numpy(body_vector("dmc", np.concatenate([x, still], 1)))
                      for x in (q, mirror)]  # fmt: skip
            p, p_mirror = head(s, bodies[0])[0], head(s, bodies[1])[0]
        torch.testing.assert_close(p, p_mirror, atol=1e-5, rtol=1e-4)
        dist = np.linalg.norm(_fingertip(q) - _fingertip(goal), axis=1)
        rhos.append(spearman(p.numpy(), -dist))
    # Measured: 0.77 mean Spearman (a head that answers the mean goal ranks by the wrong place).
    assert np.mean(rhos) > 0.6
    # A body without a known effector, or goal fields beside the effector, is refused.
    with pytest.raises(ValueError, match="no effector is known"):
        tiny_head(target="body_goal", proprio_fields=("a", "b"), goal_space="effector")
    with pytest.raises(ValueError, match="no goal_fields"):
        tiny_head(target="body_goal", proprio_fields=FIELDS, goal_fields=ANGLES,
                  goal_space="effector")  # fmt: skip
    with pytest.raises(ValueError, match="goal_space must be"):
        tiny_head(target="body_goal", proprio_fields=FIELDS, goal_space="joints")
