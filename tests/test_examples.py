"""The README's main job, shrunk: real LIBERO collection, encoding and preview."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sim, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def test_collect_libero_example(tmp_path):
    ex = _load("collect_libero")
    summary = ex.main(ex.Args(out=tmp_path / "ds", expert=1, noisy=1, workers=2))
    assert summary["episodes"] == 2
    assert summary["policies"]["expert"]["success_rate"] == 1.0  # the scripted expert solves it
    assert summary["encode"]["grid"] == [8, 8] and summary["encode"]["feature_dim"] == 512
    assert Path(summary["preview"]).stat().st_size > 10_000


def test_train_ppo_in_wm_example_on_embedded_bundle(tmp_path, capsys):
    """The main job, shrunk: embedded LIBERO bundle -> residual PPO in the dream -> real LIBERO."""
    ex = _load("train_ppo_in_wm")
    cfg = ex.WMRLConfig(
        out=tmp_path / "wmrl",
        ppo_steps=64,
        num_envs=4,
        group_size=2,
        n_steps=4,
        snapshots=1,
        eval_episodes=1,
        eval_max_steps=16,
        eval_workers=1,
        device="cpu",
        progress=False,
    )
    ex.main(cfg)
    printed = capsys.readouterr().out
    assert "imagined success" in printed and "real success" in printed
    assert "paired" in printed and "better on" in printed  # the paired comparison
    report = (tmp_path / "wmrl" / "report.json").read_text()
    assert '"bc+ppo"' in report
    assert list((tmp_path / "wmrl" / "videos").rglob("*.mp4"))
    with pytest.raises(ValueError, match="--group-size 8 must divide --num-envs 4"):
        ex.WMRLConfig(num_envs=4)
