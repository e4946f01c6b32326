"""Shared helpers: Wilson intervals, atomic JSON, device resolution, provenance."""

from __future__ import annotations

import pytest
import torch

from rla_gym.utils import load_json, provenance, resolve_device, save_json
from rla_gym.utils.stats import wilson_interval


def test_wilson_known_values():
    lo, hi = wilson_interval(35, 50)
    assert lo == pytest.approx(0.5625, abs=1e-3) and hi == pytest.approx(0.8090, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_json_round_trip(tmp_path):
    save_json({"a": [1, 2]}, tmp_path / "x" / "a.json")
    assert load_json(tmp_path / "x" / "a.json") == {"a": [1, 2]}


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_provenance_fields():
    p = provenance(seed=3)
    assert p["seed"] == 3 and "git_sha" in p and p["machine"]["cores"] >= 1
    assert "numpy" in p["versions"]


def _square_or_fail(args, items, emit):
    for i in items:
        if i == args:
            raise ValueError(f"cannot do item {i}")
        emit(i * i)


def test_imap_workers_results_and_failures():
    from rla_gym.utils.parallel import imap_workers

    out = sorted(imap_workers(_square_or_fail, -1, range(5), 2, desc="t", progress=False))
    assert out == [0, 1, 4, 9, 16]
    with pytest.raises(RuntimeError, match="cannot do item 3"):
        list(imap_workers(_square_or_fail, 3, range(5), 2, desc="t", progress=False))


def test_int8_state_dict_roundtrip_and_checkpoint_loading(tmp_path) -> None:
    from safetensors.torch import save_file

    from rla_gym.utils.checkpoint import (
        dequantize_state_dict,
        load_checkpoint,
        quantize_state_dict,
        save_checkpoint,
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.LayerNorm(64))
    q = quantize_state_dict(model.state_dict())
    assert q["0.weight"].dtype == torch.int8 and q["0.bias"].dtype == torch.float32
    back = dequantize_state_dict(q)
    assert set(back) == set(model.state_dict())
    w = model.state_dict()["0.weight"]
    # symmetric per group of 32 values: error at most half a quantisation step of that group
    step = w.view(64, 4, 32).abs().amax(-1, keepdim=True).expand(64, 4, 32).reshape(64, 128) / 127
    assert torch.all((back["0.weight"] - w).abs() <= step / 2 + 1e-4)
    path = save_checkpoint(tmp_path / "ck", {}, model, model_type="test")
    save_file(q, str(path / "model.safetensors"))
    loaded = load_checkpoint(path).state_dict
    assert loaded["0.weight"].dtype == torch.float32
    torch.testing.assert_close(loaded["0.weight"], back["0.weight"])


_ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from rla_gym.utils.parallel import imap_workers

def sleepy(args, items, emit):
    import os
    Path(args).write_text(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    list(imap_workers(sleepy, sys.argv[1], [0], 1, desc="t", progress=False))
"""


def test_imap_workers_do_not_outlive_a_killed_parent(tmp_path) -> None:
    """A parent killed outright runs no cleanup; its workers must stop on their own rather than
    go on writing data (an interrupted collection once kept a worker running)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script, pid_file = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(_ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    try:
        deadline = time.time() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.time() < deadline and parent.poll() is None, "the worker never started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent by 15 s")
    finally:
        parent.kill()


def test_rows_of_bundle_moves_another_bundles_rows_aside() -> None:
    from rla_gym.utils.provenance import rows_of_bundle

    old = {
        "bundle_created_utc": "A",
        "arms": {"bc": {"success": 3}, "random": {"success": 1}},
        "config": {"x": 1},
        "superseded": {"Z": {"arms": {}}},
    }
    # Same bundle: everything stays.
    assert rows_of_bundle(old, "A", "arms") == (old["arms"], {"Z": {"arms": {}}})
    # Rebuilt: the bundle's rows move aside with the record; rows that do not depend on it stay.
    kept, sup = rows_of_bundle(old, "B", "arms", still_valid=lambda k: k == "random")
    assert kept == {"random": {"success": 1}}
    assert sup == {"Z": {"arms": {}}, "A": {"arms": {"bc": {"success": 3}}, "config": {"x": 1}}}
    assert rows_of_bundle({}, "B", "arms") == ({}, {})
