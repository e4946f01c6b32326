"""``benchmarks/rl_in_dream_manip.py`` records what a residual-PPO row was worth in the dream beside
what it got in reality: one tiny PPO run in the embedded Lift dream, judged on one real Lift
episode (~30 s on one core)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_script import load_benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_tagged_ppo_row_records_its_imagined_success_and_return_beside_the_real(
    tmp_path: Path,
) -> None:
    bench = load_benchmark("rl_in_dream_manip")
    out = tmp_path / "lift.json"
    shipped = {"bc+ppo": {"success": 1, "episodes": 1, "wilson95": [0.2, 1.0]}}
    # A file of this bundle with a default row the variant must leave alone.
    man = json.loads((Path("rla_gym/envs/assets/robosuite-lift") / "manifest.json").read_text())
    out.write_text(json.dumps({"bundle_created_utc": man["created_utc"], "policies": shipped}))
    args = bench.Args(suite="robosuite-lift", policies=("bc+ppo",), seeds=(0,), episodes=1,
                      ppo_steps=512, reward_mode="progress", residual_scale=0.2,
                      residual_lr=3e-4, tag="progress, tiny", runs=tmp_path / "runs",
                      out=out)  # fmt: skip
    result = bench.main(args)

    assert result["policies"]["bc+ppo"] == shipped["bc+ppo"]
    row = result["policies"]["bc+ppo progress, tiny"]
    assert (row["ppo_steps"], row["residual_scale"], row["residual_lr"]) == (512, 0.2, 3e-4)
    (seed,) = row["per_seed"]
    assert seed["reward_mode"] == "progress" and seed["success_estimate"] in (
        "progress_head", "goal_distance")  # fmt: skip
    for key in ("imagined", "imagined_base"):
        dreamt = seed[key]
        paired = seed["imagined_vs_base"]["returns"]  # the same starts for both
        assert 0 <= dreamt["success"] <= dreamt["episodes"] == paired["episodes"] > 0
        assert row[key] == dreamt  # one seed: the pooled record is that seed's
    assert seed["imagined"]["return"] == pytest.approx(seed["dream_return"])
    assert seed["imagined_base"]["success"] == round(
        seed["dream_bc_success_rate"] * seed["imagined_base"]["episodes"]
    )
    assert (run := tmp_path / "runs" / "robosuite-lift").exists()
    assert any(p.name.startswith("ppo_progress_tiny_0") for p in run.rglob("ppo_*"))


def test_seeds_pool_imagined_episodes_by_count_and_return_by_episode() -> None:
    bench = load_benchmark("rl_in_dream_manip")
    rows = [
        {"success": 4, "episodes": 5, "imagined": {"success": 3, "episodes": 10, "return": 1.0},
         "imagined_base": {"success": 2, "episodes": 10, "return": 0.0}},
        {"success": 5, "episodes": 5, "imagined": {"success": 1, "episodes": 30, "return": 3.0},
         "imagined_base": {"success": 6, "episodes": 30, "return": 2.0}},
    ]  # fmt: skip
    pooled = bench._pooled(rows)
    assert (pooled["success"], pooled["episodes"]) == (9, 10)
    assert pooled["imagined"] == {"success": 4, "episodes": 40, "return": 2.5}
    assert pooled["imagined_base"] == {"success": 8, "episodes": 40, "return": 1.5}
    assert "imagined" not in bench._pooled([{"success": 1, "episodes": 2}])  # an older row
