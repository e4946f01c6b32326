"""``benchmarks/closed_loop.py``'s options and its result file (no simulator, no dream)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rla_gym.utils import load_json, save_json

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # it reads counterfactual.py's option parser
    spec = importlib.util.spec_from_file_location("bench_closed_loop", BENCH / "closed_loop.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses resolve their annotations there
    spec.loader.exec_module(bench)
    return bench


def test_further_policies_are_parsed_per_suite_and_run_before_random(tmp_path: Path) -> None:
    bench = _bench()
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
    bench = _bench()
    out = tmp_path / "closed_loop.json"
    save_json({"suites": {"libero": {"rows": 1}, "dmc-reacher": {"rows": 1}}}, out)
    # A reacher run that loaded the file before the LIBERO run wrote its rows.
    stale = {"suites": {"dmc-reacher": {"rows": 2}, "libero": {"rows": 0}}, "provenance": {}}
    save_json({"suites": {"libero": {"rows": 5}, "dmc-reacher": {"rows": 1}}}, out)
    bench.write(stale, "dmc-reacher", out)
    assert load_json(out)["suites"] == {"libero": {"rows": 5}, "dmc-reacher": {"rows": 2}}
