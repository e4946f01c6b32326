"""``benchmarks/merge_arms.py``: arms of parallel runs go into the shipped result file with their
own provenance; a file of another task or bundle build, or an arm already there, is refused and
the shipped file is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_script import load_benchmark

from rla_gym.utils import load_json


def _result(path: Path, arms: dict[str, int], sha: str, created: str = "2026-12-01") -> Path:
    rows = {name: {"success": k, "episodes": 50} for name, k in arms.items()}
    stamp = {"git_sha": sha, "time_utc": f"t-{sha}"}
    doc = {"task": "reacher", "bundle_created_utc": created, "arms": rows, "provenance": stamp}
    path.write_text(json.dumps(doc))
    return path


def test_parallel_runs_merge_with_their_provenance_and_clashes_are_refused(tmp_path: Path) -> None:
    bench = load_benchmark("merge_arms")
    into = _result(tmp_path / "shipped.json", {"bc": 30}, "aaa")
    a = _result(tmp_path / "a.json", {"dream x": 33}, "bbb")
    b = _result(tmp_path / "b.json", {"real x": 44}, "ccc")
    bench.main(bench.Args(into=into, sources=(a, b)))
    arms = load_json(into)["arms"]
    assert arms["bc"] == {"success": 30, "episodes": 50}  # untouched
    assert arms["dream x"]["success"] == 33 and arms["dream x"]["provenance"]["git_sha"] == "bbb"
    assert arms["real x"]["provenance"] == {"git_sha": "ccc", "time_utc": "t-ccc"}

    before = into.read_text()
    again = _result(tmp_path / "again.json", {"dream x": 35}, "ddd")
    other = _result(tmp_path / "other.json", {"new": 1}, "eee", created="2026-11-01")
    with pytest.raises(ValueError, match=r"already holds \['dream x'\].*--replace"):
        bench.main(bench.Args(into=into, sources=(again,)))
    with pytest.raises(ValueError, match=r"other\.json has bundle_created_utc"):
        bench.main(bench.Args(into=into, sources=(other,)))
    assert into.read_text() == before  # nothing written by a refused merge
    bench.main(bench.Args(into=into, sources=(again,), replace=True))
    assert load_json(into)["arms"]["dream x"]["success"] == 35
    both = _result(tmp_path / "both.json", {"dream y": 40, "planner y": 45}, "fff")
    with pytest.raises(ValueError, match=r"holds no arm \['planner z'\]"):
        bench.main(bench.Args(into=into, sources=(both,), arms=("planner z",)))
    bench.main(bench.Args(into=into, sources=(both,), arms=("planner y",)))
    assert "planner y" in load_json(into)["arms"] and "dream y" not in load_json(into)["arms"]
