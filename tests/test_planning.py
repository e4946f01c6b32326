"""The dream planner: config errors, search that improves the dream's score, MPC, distillation,
and ``rla-gym eval --policy plan`` (CPU; tiny bundle of ``tiny_bundle.py`` and embedded bundles)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import K

from rla_gym.envs.rla_world import RLAWorldConfig
from rla_gym.errors import MissingWeightsError
from rla_gym.planning import DreamPlanner, MPCController, PlannerConfig, PlannerPolicy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = PlannerConfig(samples=8, iterations=2, horizon=2, flow_steps=2)


def _tiny_planner(bundle: Path, **kw: object) -> DreamPlanner:
    return DreamPlanner(RLAWorldConfig(artifacts=str(bundle)), dataclasses.replace(TINY, **kw))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"samples": 0}, "samples must be >= 1, got 0"),
        ({"elite_fraction": 0.0}, r"elite_fraction must be in \(0, 1\], got 0.0"),
        ({"elite_fraction": 1.5}, r"elite_fraction must be in \(0, 1\], got 1.5"),
        ({"horizon": 0}, "horizon must be >= 1 chunk"),
        ({"iterations": 0}, "iterations must be >= 1"),
        ({"mode": "random"}, "mode must be 'cem' or 'mppi'"),
        ({"residual_scale": -0.1}, r"residual_scale must be in \[0, 2\]"),
    ],
)
def test_planner_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PlannerConfig(**kwargs)  # type: ignore[arg-type]


def test_planner_horizon_beyond_episode_and_missing_base_raise(bundle: Path) -> None:
    from rla_gym.errors import MissingWeightsError

    horizon = _tiny_planner(bundle).episode_horizon
    with pytest.raises(ValueError, match=f"beyond the env's episode horizon of {horizon} chunks"):
        _tiny_planner(bundle, horizon=horizon + 1)
    with pytest.raises(MissingWeightsError, match="residual_scale=0"):
        _tiny_planner(bundle, residual_scale=0.1)  # the tiny bundle ships no BC policy


@pytest.mark.parametrize("mode", ["cem", "mppi"])
def test_planned_chunks_beat_the_first_random_candidates_in_the_dream(mode: str) -> None:
    """Re-scored with fresh flow noise, the plan's sequence does at least as well as the mean of
    its own first-iteration candidates (a planner that kept the worst samples would fail)."""
    cfg = PlannerConfig(mode=mode, samples=32, iterations=3, horizon=2, flow_steps=2)
    planner = DreamPlanner(RLAWorldConfig(suite="robosuite-lift"), cfg)
    core = planner.core
    for start in (0, 1):
        s0, demo = core.reset_features[start], int(core.art.reset_demo[start])
        plan = planner.plan(s0, demo, t=0, seed=start)
        assert plan.action.shape == (K * core.action_dim,) and np.abs(plan.action).max() <= 1
        assert len(plan.history) == 3 and plan.first_candidates.shape == (32, 2, plan.action.size)
        planned, candidates = [], []
        for seed in (100, 101):
            planned.append(planner.evaluate(s0, demo, 0, plan.mean[None], seed=seed)[0])
            candidates.append(planner.evaluate(s0, demo, 0, plan.first_candidates, seed).mean())
        assert np.mean(planned) >= np.mean(candidates), (planned, candidates, plan.history)


def test_mpc_aligns_counts_time_and_warm_starts_by_shifting(bundle: Path) -> None:
    planner = _tiny_planner(bundle)
    core, size = planner.core, planner.action_size
    mpc = MPCController(planner)
    mpc.reset(seed=3)
    s0 = core.reset_features[1].cpu().numpy()
    chunk = mpc(s0)
    assert chunk.shape == (size,) and chunk.dtype == np.float32
    assert mpc.demo == int(core.art.reset_demo[1]) and mpc.t == K  # the bank's own alignment
    first = mpc.last_plan
    assert first is not None and mpc.warm_start is not None
    assert mpc.warm_start.shape == (TINY.horizon, size)
    np.testing.assert_array_equal(mpc.warm_start[:-1], first.mean[1:])
    np.testing.assert_array_equal(mpc.warm_start[-1], 0.0)
    mpc(s0)
    assert mpc.t == 2 * K and len(mpc.plan_seconds) == 2
    # the warm start is the next plan's incumbent (candidate 0)
    assert mpc.last_plan is not None
    np.testing.assert_allclose(
        mpc.last_plan.first_candidates[0],
        np.concatenate([first.mean[1:], np.zeros((1, size), np.float32)]),
    )
    again = MPCController(planner)
    again.reset(seed=3)
    np.testing.assert_array_equal(again(s0), chunk)  # same episode seed, same plan
    mpc.reset(seed=4, demo=0, t=8)
    assert mpc.warm_start is None and mpc.demo == 0 and mpc.t == 8
    # Decisions are one chunk apart: each plan sees the previous decision's features (for a
    # world model with history); a new episode starts at rest.
    assert mpc.previous is None
    mpc(s0)
    np.testing.assert_array_equal(mpc.previous, s0)


def test_record_plans_and_distill_into_a_bc_cost_policy(bundle: Path, tmp_path: Path) -> None:
    from rla_gym.agents import ActorCriticConfig, BCConfig
    from rla_gym.planning import distill, record_plans

    planner = _tiny_planner(bundle, iterations=1, horizon=1)
    data = record_plans(MPCController(planner), starts=[0, 1], seed=0)
    m = 2 * planner.episode_horizon
    assert data["features"].shape == (m, 4, 16) and data["chunks"].shape == (m, K * 2)
    assert data["returns"].shape == (2,) and np.all(np.isfinite(data["returns"]))
    tiny = ActorCriticConfig(
        token_dim=8, feature_dim=16, actor_hidden=(16,), critic_hidden=(16,), mlp_hidden=(16,)
    )
    policy = distill(
        data["features"],
        data["chunks"],
        policy_config=tiny,
        bc_config=BCConfig(steps=5, batch_size=4, val_fraction=0.0),
    )
    assert policy.predict(data["features"][:3])[0].shape == (3, K * 2)
    residual = distill(
        data["features"],
        data["chunks"],
        base_policy=policy,
        residual_scale=0.2,
        bc_config=BCConfig(steps=5, batch_size=4, val_fraction=0.0),
    )
    assert residual.config.residual and residual.config.residual_scale == 0.2

    # A planner may search around a saved policy other than the bundle's base (a worker's copy).
    residual.save(tmp_path / "around")
    cfg = dataclasses.replace(TINY, residual_scale=0.2)
    around = PlannerPolicy(str(bundle), cfg, base_policy=str(tmp_path / "around"))().planner
    x = data["features"][:3]
    np.testing.assert_allclose(around.base_policy.predict(x)[0], residual.predict(x)[0], atol=1e-6)
    with pytest.raises(MissingWeightsError, match="ships none"):  # the tiny bundle has no base
        PlannerPolicy(str(bundle), cfg)()


@pytest.mark.sim
def test_eval_cli_policy_plan_on_reacher(bundle: Path, tmp_path: Path) -> None:
    """``rla-gym eval --policy plan`` in real dm-control reacher (tiny bundle, 1 short episode)."""
    pytest.importorskip("dm_control")
    from rla_gym.cli.main import main

    out = tmp_path / "plan.json"
    argv = ["eval", "--policy", "plan", "--bundle", str(bundle), "--sim", "dmc", "--encoder",
            "tiny", "--resolution", "32", "--episodes", "1", "--workers", "1", "--max-steps",
            "16", "--samples", "8", "--iterations", "1", "--horizon", "1", "--flow-steps", "2",
            "--reward-mode", "goal", "--no-progress", "--out", str(out)]  # fmt: skip
    with pytest.warns(UserWarning, match="dream is of another task"):
        assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["policy"]["kind"] == "plan" and report["policy"]["planner"]["samples"] == 8
    assert report["policy"]["reward_mode"] == "goal"
    assert report["episodes"] == 1 and report["rows"][0]["length"] == 16
    assert report["mean_decision_s"] > 0
    with pytest.warns(UserWarning):
        assert main([*argv[:-2], "--horizon", "99", "--out", str(out)]) == 2  # one-line error


@pytest.mark.parametrize("mode", ["cem", "mppi"])
def test_search_is_model_free_and_finds_the_best_sequence(mode: str) -> None:
    """The planner's search alone, on a toy return with a known optimum."""
    import torch

    from rla_gym.planning import search_chunks

    target = torch.tensor([[0.5, -0.3, 0.1], [-0.6, 0.2, 0.0]])

    def rollout(cand: torch.Tensor, noise_seed: int) -> np.ndarray:
        return -((cand - target) ** 2).sum((1, 2)).double().numpy()

    cfg = PlannerConfig(mode=mode, samples=64, iterations=6, horizon=2, elite_fraction=0.2)
    found = search_chunks(rollout, cfg, 1.0, 3, torch.Generator().manual_seed(0))
    assert found.mean.shape == (2, 3) and len(found.history) == 6
    assert float((found.mean - target).abs().max()) < 0.15
    assert found.history[-1]["elite"] > found.history[0]["mean"]
    # A warm start outside the range is clamped, and kept as candidate 0.
    warm = torch.full((2, 3), 3.0)
    again = search_chunks(rollout, dataclasses.replace(cfg, iterations=1), 1.0, 3,
                   torch.Generator().manual_seed(0), warm)  # fmt: skip
    assert torch.equal(again.first_candidates[0], torch.ones(2, 3))


def test_planner_with_the_real_simulator_as_its_model(bundle: Path) -> None:
    """``benchmarks/planner_oracle.py``: candidates run in real reacher from the restored state;
    the state is back afterwards and a candidate's score is what executing it really gives."""
    pytest.importorskip("dm_control")
    import torch
    from bench_script import load_benchmark

    from rla_gym.envs.real import RealFeatureEnv

    bench = load_benchmark("planner_oracle")

    env = RealFeatureEnv(sim="dmc", encoder="tiny", resolution=32, chunk=K)
    planner = bench.RealModelPlanner(RLAWorldConfig(artifacts=str(bundle)), TINY, "privileged")
    obs, _ = env.reset(seed=5)
    with pytest.raises(RuntimeError, match="bind the real env"):
        planner.evaluate(obs, 0, 0, np.zeros((1, 2, K * 2), np.float32))
    planner.env = env
    before = env.sim.get_sim_state()
    seqs = torch.rand(3, 2, K * 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    seqs[2] = seqs[0]
    scores = planner.evaluate(obs, 0, 0, seqs)
    assert np.array_equal(env.sim.get_sim_state(), before)  # restored exactly
    assert scores[0] == scores[2] and scores[0] != scores[1]  # deterministic, action-dependent
    executed = 0.0
    for h in range(2):
        *_, info = env.step(seqs[1, h].numpy())
        here = env.sim.set_sim_state(env.sim.get_sim_state(), render=False)
        executed += float(info["success"]) - float(np.linalg.norm(here.state["to_target"]))
    assert scores[1] == pytest.approx(executed, abs=1e-9)
    env.close()
