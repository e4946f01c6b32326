"""Dream vs real on real dm-control reacher seen through the ``tiny`` encoder at 32 px.

The tiny dreamed bundle of ``tiny_bundle.py`` (``(4, 16)`` features, chunks of 8 two-dimensional
actions) is relabelled as a reacher bundle, so real episodes run in the real simulator while the
dream stays tiny. CPU, well under a minute.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.evaluation.dream_vs_real import (
    PolicySpec,
    RealJob,
    choose_mode,
    compare,
    dream_rollouts,
    real_rollouts,
    score_modes,
)
from rla_gym.evaluation.real import RealEvalConfig
from rla_gym.evaluation.scripted import run_scripted_episode
from rla_gym.utils.io import load_json, save_json

pytest.importorskip("dm_control")
pytestmark = [pytest.mark.sim, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def reacher_bundle(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    manifest = load_json(out / "manifest.json")
    save_json({**manifest, "sim": "dmc", "task": "reacher-easy"}, out / "manifest.json")
    return out


def test_scripted_episode_records_actions_and_chunk_frames(dmc_sim: object) -> None:
    """Rendering only at chunk boundaries gives the frames of a fully rendered episode; the
    recorded normalised actions are the policy's, whether or not the episode stops on success."""
    cfg = RealEvalConfig(sim="dmc", max_steps=36, chunk=8, seed=0)
    full = run_scripted_episode(dmc_sim, "noisy", 0, cfg, 0.3, stop_on_success=False)
    chunks = run_scripted_episode(dmc_sim, "noisy", 0, cfg, 0.3, frames="chunks",
                                  stop_on_success=False, state_keys=("finger_pos",))  # fmt: skip
    assert full["frames"].shape[0] == 37 and chunks["frames"].shape[0] == 6  # 0, 8, ..., 32, 36
    np.testing.assert_array_equal(chunks["frames"], full["frames"][[0, 8, 16, 24, 32, 36]])
    np.testing.assert_array_equal(chunks["actions"], full["actions"])
    assert chunks["actions"].shape == (36, 2) and np.abs(chunks["actions"]).max() <= 1
    assert chunks["step_success"].shape == (36,) and chunks["length"] == 36
    # Per-step true state for studies: the reset's and every step's, the same with fewer frames.
    assert chunks["proprio"].shape == (37, 4) and chunks["state"]["finger_pos"].shape == (37, 2)
    np.testing.assert_array_equal(chunks["proprio"], full["proprio"])
    assert not np.array_equal(chunks["proprio"][0], chunks["proprio"][-1])
    assert full["state"] == {}
    short = run_scripted_episode(dmc_sim, "expert", 0, cfg, frames="none")
    assert "frames" not in short and short["length"] == len(short["step_success"])
    assert short["success"] == short["step_success"][-1] or short["length"] == 36


def test_real_rollouts_share_starts_resume_and_score_like_the_env(
    reacher_bundle: Path, tmp_path: Path
) -> None:
    from rla_gym.agents import ActorCritic, ActorCriticConfig
    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.envs.vector import RLAWorldVectorEnv

    ActorCritic((4, 16), 16, ActorCriticConfig(token_dim=8, feature_dim=16, actor_hidden=(16,),
                critic_hidden=(16,), mlp_hidden=(16,))).save(tmp_path / "policy")  # fmt: skip
    specs = [
        PolicySpec("random", "random"),
        PolicySpec("noisy-0.6", "noisy", noise=0.6),
        PolicySpec("expert", "expert"),
        PolicySpec("bc", "saved", str(tmp_path / "policy")),
    ]
    horizon = load_artifacts(reacher_bundle).max_episode_steps
    job = RealJob("dmc", "reacher-easy", 32, "tiny", 8, horizon, seed=0)
    cache = tmp_path / "cache"
    rows = real_rollouts(job, specs, [0, 1], cache_dir=cache, progress=False)
    assert len(rows) == 8 and not any(r["cached"] for r in rows.values())
    first = rows[("random", 0)]["features"]
    assert first.shape == (horizon + 1, 4, 16)
    for spec in specs[1:]:  # every policy starts from the same real reset
        np.testing.assert_array_equal(rows[(spec.name, 0)]["features"][0], first[0])
    assert not np.array_equal(rows[("random", 1)]["features"][0], first[0])
    assert (
        rows[("expert", 0)]["actions"].shape == (horizon, 16) and "actions" not in rows[("bc", 0)]
    )
    # Every row keeps the body (reacher: sin/cos of both joints, velocities) at the frames, the
    # saved policy's too (it acts on the features alone).
    body = rows[("expert", 0)]["body"]
    assert body.shape == rows[("bc", 0)]["body"].shape == (horizon + 1, 6)
    np.testing.assert_allclose(body[:, [0, 2]] ** 2 + body[:, [1, 3]] ** 2, 1.0, atol=1e-5)
    for name in ("random", "bc"):  # the same start
        np.testing.assert_array_equal(rows[(name, 0)]["body"][0], body[0])
    assert not np.array_equal(rows[("bc", 0)]["body"][-1], body[-1])
    again = real_rollouts(job, specs, [0, 1], cache_dir=cache, progress=False)
    assert all(r["cached"] for r in again.values())
    np.testing.assert_array_equal(again[("bc", 1)]["features"], rows[("bc", 1)]["features"])
    other = real_rollouts(dataclasses.replace(job, seed=5), specs[:1], [0], cache_dir=cache,
                          progress=False)  # fmt: skip
    assert not other[("random", 0)]["cached"]  # another seed is another episode
    # An episode cached before rows kept the body is run again, not served without it.
    for name in ("expert", "bc"):
        (old,) = cache.glob(f"{name}_000_*.npz")
        with np.load(old) as z:
            kept = {k: z[k] for k in z.files if k != "body"}
        np.savez(old, **kept)
    rerun = real_rollouts(job, specs[2:], [0, 1], cache_dir=cache, progress=False)
    assert [rerun[(n, i)]["cached"] for n in ("expert", "bc") for i in (0, 1)] == [
        False, True, False, True
    ]  # fmt: skip
    np.testing.assert_array_equal(rerun[("expert", 0)]["body"], body)
    # Other weights in the same folder (a rebuilt bundle's policy) are another policy.
    torch.manual_seed(1)
    ActorCritic((4, 16), 16, ActorCriticConfig(token_dim=8, feature_dim=16, actor_hidden=(16,),
                critic_hidden=(16,), mlp_hidden=(16,))).save(tmp_path / "policy")  # fmt: skip
    retrained = real_rollouts(job, specs[3:], [0, 1], cache_dir=cache, progress=False)
    assert not any(r["cached"] for r in retrained.values())

    # The replayed expert in the dream: the env's own reward is the aligned score of its features.
    venv = RLAWorldVectorEnv(2, artifacts=str(reacher_bundle), flow_steps=1)
    feats = np.stack([rows[("expert", i)]["features"][0] for i in (0, 1)]).astype(np.float32)
    acts = np.stack([rows[("expert", i)]["actions"] for i in (0, 1)])
    dream = dream_rollouts(venv, actions=acts, features=feats, keep_features=True)
    scored = score_modes({"aligned": venv.core}, dream["features"], dream["demo"])
    np.testing.assert_allclose(scored["aligned"]["rewards"], dream["rewards"], rtol=1e-5)

    # The comparison reuses every cached episode (all but one job field match) and scores modes.
    result = compare(reacher_bundle, specs, num_starts=2, flow_steps=1, cache_dir=cache,
                     progress=False)  # fmt: skip
    assert result["real_episodes_run"] == 0 and set(result["modes"]) == {"aligned", "goal"}
    aligned = {p["name"]: p for p in result["modes"]["aligned"]["policies"]}
    assert list(aligned) == [s.name for s in specs]
    assert aligned["expert"]["imagined"]["mean_return"] == pytest.approx(
        dream["rewards"].sum(1).mean(), rel=1e-5
    )
    assert all(p["real"]["episodes"] == 2 for p in aligned.values())
    assert result["reward_mode"] in result["modes"]
    stats = result["modes"]["aligned"]
    ci = stats["spearman_return_ci95"]
    assert ci is None or -1 <= ci[0] <= ci[1] <= 1  # bootstrap over starts
    assert stats["spearman_return_closed_loop"] is None  # one closed-loop policy: undefined
    assert {"spearman_return_scripted", "spearman_return_within_start"} <= set(stats)


def test_choose_mode_ranks_by_real_success_then_return() -> None:
    def stats(vs_success: float | None, ret: float | None) -> dict:
        return {"spearman_return_vs_real_success": vs_success, "spearman_return": ret}

    assert choose_mode({"aligned": stats(0.2, 0.9), "progress": stats(0.5, 0.1)}) == "progress"
    assert choose_mode({"aligned": stats(0.5, 0.1), "goal": stats(0.5, 0.3)}) == "goal"
    assert choose_mode({"aligned": stats(None, None), "goal": stats(None, None)}) == "aligned"
    with pytest.raises(ValueError, match="noise > 0 goes with kind 'noisy'"):
        PolicySpec("n", "noisy")


def test_dream_rollouts_start_a_body_dream_from_the_given_body(body_bundle: Path) -> None:
    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.envs.vector import RLAWorldVectorEnv

    art = load_artifacts(body_bundle)
    venv = RLAWorldVectorEnv(2, artifacts=str(body_bundle), flow_steps=1)
    feats = np.asarray(art.reset_features[:2], np.float32)
    body = np.asarray(art.reset_proprio[:2], np.float32) + np.float32(0.05)
    acts = np.zeros((2, venv.max_episode_steps, venv.single_action_space.shape[0]), np.float32)
    seen = []

    class Recorder:
        """Replays zeros and records the body it is shown at every chunk."""

        def predict(self, obs: dict, deterministic: bool = True) -> tuple[np.ndarray, None]:
            seen.append(np.asarray(obs["proprio"]))
            return acts[:, 0], None

    out = dream_rollouts(venv, policy=Recorder(), features=feats, proprio=body,
                         keep_features=True)  # fmt: skip
    np.testing.assert_allclose(seen[0], body, rtol=1e-6)  # the dream starts from the given body
    assert len(seen) == venv.max_episode_steps and out["success"].shape == (2, len(seen))
    # The dreamed body after every chunk is kept beside the features: what the policy was
    # shown next, and what a reward that reads the body scores.
    assert out["body"].shape == (2, len(seen), body.shape[1])
    np.testing.assert_allclose(out["body"][:, :-1], np.stack(seen[1:], 1), rtol=1e-6)
    scored = score_modes({"aligned": venv.core}, out["features"], out["demo"], out["body"])
    assert scored["aligned"]["rewards"].shape == (2, len(seen))
    with pytest.raises(ValueError, match="proprio goes with features"):
        dream_rollouts(venv, actions=acts, starts=[0, 1], proprio=body)
    venv.close()
