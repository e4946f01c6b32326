"""Real-simulator evaluation that survives dead workers and interruptions (project issue #26).

dm-control reacher, short episodes, real worker processes killed with SIGKILL; no mocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rla_gym.cli.main import main
from rla_gym.errors import RLAGymError
from rla_gym.utils.parallel import KILL_ONCE_ENV

pytest.importorskip("dm_control")
pytestmark = pytest.mark.sim

TINY = {"sim": "dmc", "encoder": "tiny", "resolution": 32, "max_steps": 16}


def _cli(out: Path, *extra: str, max_steps: int = 30) -> list[str]:
    return ["eval", "--sim", "dmc", "--max-steps", str(max_steps), "--no-progress",
            "--out", str(out), *extra]  # fmt: skip


@dataclass(frozen=True)
class _Faults:
    """Factory of a constant feature policy (a chunk K=8 of reacher's 2-D actions) that, in
    episode ``kill_once`` the first time, SIGKILLs its own worker mid-episode, does so in every
    attempt at ``kill_always`` too, and raises in episode ``raise_once`` the first time."""

    folder: str
    kill_once: int = -1
    kill_always: int = -1
    raise_once: int = -1

    def __call__(self) -> _FaultyPolicy:
        return _FaultyPolicy(self)


class _FaultyPolicy:
    def __init__(self, faults: _Faults) -> None:
        self.f, self.episode = faults, -1

    def reset(self, seed: int) -> None:
        self.episode = seed  # RealEvalConfig.seed = 0: the reset seed is the episode index

    def _first(self, what: str) -> bool:
        try:
            os.close(os.open(f"{self.f.folder}/{what}-{self.episode}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def __call__(self, features: np.ndarray) -> np.ndarray:
        f, i = self.f, self.episode
        if i == f.kill_always or (i == f.kill_once and self._first("k")):
            os.kill(os.getpid(), signal.SIGKILL)
        if i == f.raise_once and self._first("r"):
            raise RuntimeError(f"policy broke in episode {i}")
        return np.full(16, 0.3, np.float32)


def test_a_killed_worker_s_episode_is_retried_and_a_doomed_one_is_reported(
    tmp_path: Path,
) -> None:
    """Episode 1 kills its worker once (retried on a fresh worker, same result as a clean run),
    episode 3 kills every worker it runs on (not run, with the reason); the rest go on (episode
    2 starts solved: no decision)."""
    from rla_gym.evaluation.real import RealEvalConfig, evaluate_in_sim

    cfg = RealEvalConfig(**TINY, episodes=4, workers=2)
    factory = _Faults(str(tmp_path), kill_once=1, kill_always=3)
    r = evaluate_in_sim(factory, cfg, progress=False, resume=tmp_path / "log.jsonl")
    assert [row["index"] for row in r["rows"]] == [0, 1, 2]
    assert r["retried"] == [1, 3] and r["rows"][1]["retried"] is True
    assert r["not_run"] == [{"index": 3, "reason": "worker killed by SIGKILL, 2 attempt(s)"}]
    assert (tmp_path / "k-1").exists()
    logged = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sorted(x["index"] for x in logged if "index" in x) == [0, 1, 2]
    assert {"not_run": 3, "reason": "worker killed by SIGKILL, 2 attempt(s)"} in logged


def test_cli_eval_survives_a_worker_killed_after_its_first_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's scenario, shortened: a scripted policy, 2 workers, one SIGKILLed mid-run."""
    monkeypatch.setenv(KILL_ONCE_ENV, str(tmp_path / "killed"))
    out = tmp_path / "r.json"
    assert main(_cli(out, "--policy", "random", "--episodes", "4", "--workers", "2")) == 0
    assert (tmp_path / "killed").exists()  # a worker really was killed
    r = json.loads(out.read_text())
    assert [row["index"] for row in r["rows"]] == [0, 1, 2, 3] and r["not_run"] == []
    assert len(r["retried"]) == 1 and r["rows"][r["retried"][0]]["retried"] is True
    assert not out.with_name("r.json.partial.jsonl").exists()
    assert f"episode(s) {r['retried']}" in capsys.readouterr().out


def test_a_failed_evaluation_keeps_its_episodes_and_resumes(tmp_path: Path) -> None:
    """A worker that raises ends the run with one line; finished episodes stay in the log and a
    re-run runs only the missing ones."""
    from rla_gym.evaluation.real import RealEvalConfig, evaluate_in_sim
    from rla_gym.utils.parallel import WorkerError

    cfg = RealEvalConfig(**TINY, episodes=4, workers=1)
    log, factory = tmp_path / "log.jsonl", _Faults(str(tmp_path), raise_once=3)
    with pytest.raises(WorkerError) as info:
        evaluate_in_sim(factory, cfg, progress=False, resume=log)
    msg = str(info.value)
    assert isinstance(info.value, RLAGymError) and "\n" not in msg
    assert "policy broke in episode 3" in msg and f"kept in {log}" in msg
    lines = log.read_text().splitlines()
    assert [json.loads(x)["index"] for x in lines[1:]] == [0, 1, 2]
    marked = {**json.loads(lines[1]), "return": 123.0}  # proves episode 0 is not run again
    log.write_text("\n".join([lines[0], json.dumps(marked), *lines[2:]]) + "\n")
    again = evaluate_in_sim(factory, cfg, progress=False, resume=log)
    assert again["resumed"] == 3 and [x["index"] for x in again["rows"]] == [0, 1, 2, 3]
    assert again["rows"][0]["return"] == 123.0


def test_cli_eval_killed_outright_resumes_only_missing_episodes(tmp_path: Path) -> None:
    """``rla-gym eval`` SIGKILLed after its first finished episode, then the same command."""
    out, partial = tmp_path / "r.json", tmp_path / "r.json.partial.jsonl"
    # Episodes of up to 1000 control steps (~0.6 s; seeds 0..3 take 1000, 560, 0 and 1000).
    argv = _cli(out, "--policy", "random", "--episodes", "4", "--workers", "1", max_steps=1000)
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen([sys.executable, "-m", "rla_gym.cli.main", *argv], env=env)
    try:
        deadline = time.time() + 25
        while not partial.exists() or len(partial.read_text().splitlines()) < 2:
            assert time.time() < deadline and proc.poll() is None, "no episode finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert not out.exists()
    lines = partial.read_text().splitlines()
    done = len(lines) - 1
    assert 1 <= done < 4
    marked = {**json.loads(lines[1]), "return": 123.0}  # proves episode 0 is not run again
    partial.write_text("\n".join([lines[0], json.dumps(marked), *lines[2:]]) + "\n")
    assert main(argv) == 0
    r = json.loads(out.read_text())
    assert r["resumed"] == done and [x["index"] for x in r["rows"]] == list(range(4))
    assert r["rows"][0]["return"] == 123.0 and not partial.exists()
    # The finished report is resumed too: a longer evaluation adds only the new episodes.
    assert main([*argv, "--episodes", "5"]) == 0
    r5 = json.loads(out.read_text())
    assert r5["resumed"] == 4 and r5["rows"][0]["return"] == 123.0 and r5["episodes"] == 5


def test_cli_eval_refuses_an_output_of_another_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert main(_cli(out, "--policy", "random", "--episodes", "1", "--workers", "1")) == 0
    capsys.readouterr()
    cases = [(["--policy", "expert"], "policy.kind ('random' there, 'expert' here)"),
             (["--policy", "random", "--max-steps", "20"], "eval.max_steps (30 there, 20 here)"),
             (["--policy", "random", "--task", "reacher-hard"], "eval.task")]  # fmt: skip
    for extra, what in cases:
        assert main([*_cli(out, "--episodes", "2", "--workers", "1"), *extra]) == 2
        err = capsys.readouterr().err
        assert "EvaluationMismatchError" in err and what in err and err.count("\n") == 1, err
        assert f"{out} holds another evaluation" in err
    # A partial log of another evaluation is refused as well.
    partial = out.with_name("r.json.partial.jsonl")
    header = json.loads(out.read_text())
    header = {"header": {"policy": header["policy"], "eval": {"sim": "libero"}}}
    partial.write_text(json.dumps(header) + "\n")
    assert main(_cli(out, "--policy", "random", "--episodes", "2", "--workers", "1")) == 2
    assert f"{partial} holds another evaluation" in capsys.readouterr().err
    # --no-resume starts over and overwrites both.
    argv = _cli(out, "--policy", "expert", "--episodes", "1", "--workers", "1", "--no-resume")
    assert main(argv) == 0
    assert json.loads(out.read_text())["policy"]["kind"] == "expert" and not partial.exists()
