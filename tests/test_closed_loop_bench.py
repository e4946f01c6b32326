"""``benchmarks/closed_loop.py``'s options and its result file (no simulator, no dream)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bench_script import load_benchmark

from rla_gym.utils import load_json, save_json


def test_further_policies_are_parsed_per_suite_and_run_before_random(tmp_path: Path) -> None:
    bench = load_benchmark("closed_loop")
    folder = tmp_path / "bc-5"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    pairs = (f"libero:bc-5={folder}", f"dmc-reacher:bc-5={folder}")
    assert bench.extra_policies(pairs, "libero") == {"bc-5": str(folder)}
    assert bench.extra_policies(pairs, "robosuite-lift") == {}
    names = list(bench.policies(tmp_path, 4, {"bc-5": str(folder)}))
    assert names[0] == "base" and names[-2:] == ["bc-5", "random"]
    assert bench.policies(tmp_path, 4, {"bc-5": str(folder)})["bc-5"].path == str(folder)
    for bad, why in [
        (f"libero:base={folder}", "built-in"),
        (f"libero:bc={tmp_path / 'missing'}", "no saved policy"),
        (f"bc-5={folder}", "suite:name=folder"),
        (f"mujoco:bc-5={folder}", "suite:name=folder"),
    ]:
        with pytest.raises(SystemExit, match=why):
            bench.extra_policies((bad,), "libero")


def test_runs_of_different_suites_into_one_file_keep_each_other(tmp_path: Path) -> None:
    bench = load_benchmark("closed_loop")
    out = tmp_path / "closed_loop.json"
    save_json({"suites": {"libero": {"rows": 1}, "dmc-reacher": {"rows": 1}}}, out)
    # A reacher run that loaded the file before the LIBERO run wrote its rows.
    stale = {"suites": {"dmc-reacher": {"rows": 2}, "libero": {"rows": 0}}, "provenance": {}}
    save_json({"suites": {"libero": {"rows": 5}, "dmc-reacher": {"rows": 1}}}, out)
    bench.write(stale, "dmc-reacher", out)
    assert load_json(out)["suites"] == {"libero": {"rows": 5}, "dmc-reacher": {"rows": 2}}


def test_closed_loop_calibration_thresholds() -> None:
    """The calibration benchmark's scores: balanced accuracy is chance for a rule that calls
    everything solved, and the best threshold separates distances that can be separated."""
    clc = load_benchmark("closed_loop_calibration")
    label = np.array([True, True, False, False, False])
    assert clc.balanced_accuracy(np.ones(5, bool), label) == 0.5
    dist = np.array([0.01, 0.02, 0.05, 0.06, 0.07])
    t = clc.best_threshold(dist, label)
    assert 0.02 < t <= 0.05 and clc.balanced_accuracy(dist < t, label) == 1.0
    # Inseparable: the successes sit among the failures, and no threshold beats 0.75.
    mixed = np.array([0.07, 0.01, 0.02, 0.06, 0.05])
    assert clc.balanced_accuracy(mixed < clc.best_threshold(mixed, label), label) == 0.75
