"""``imap_workers`` when workers die: real worker processes killed with SIGKILL, no mocks."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from rla_gym.errors import RLAGymError
from rla_gym.utils.parallel import WorkerError, imap_workers


def _die_on(args: tuple[str, int, bool], items: list[int], emit: object) -> None:
    """Sleep a little per item; SIGKILL this worker on item ``bad`` (once, or every time)."""
    folder, bad, always = args
    for i in items:
        time.sleep(0.05)
        if i == bad:
            marker = Path(folder) / f"died-{i}"
            if always or not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        emit(i)  # type: ignore[operator]


def _slow(args: float, items: list[int], emit: object) -> None:
    for i in items:
        time.sleep(args)
        emit(i)  # type: ignore[operator]


def _fail_on_2(args: None, items: list[int], emit: object) -> None:
    for i in items:
        if i == 2:
            raise ValueError("cannot do item 2")
        emit(i)  # type: ignore[operator]


def test_a_worker_killed_mid_item_loses_nothing_and_its_item_is_retried(tmp_path: Path) -> None:
    lost: list[tuple[int, str, bool]] = []
    out = list(imap_workers(_die_on, (str(tmp_path), 3, False), range(6), 2, desc="t",
                            progress=False, on_lost=lambda *a: lost.append(a)))  # fmt: skip
    assert sorted(out) == list(range(6))  # the other worker went on, item 3 ran again
    assert lost == [(3, "killed by SIGKILL", True)]


def test_a_worker_killed_from_outside_is_replaced() -> None:
    """The issue's scenario: one of two live workers is SIGKILLed by pid during the run."""
    lost: list[tuple[int, str, bool]] = []
    out, killed = [], None
    for r in imap_workers(_slow, 0.6, range(6), 2, desc="t", progress=False,
                          on_lost=lambda *a: lost.append(a)):  # fmt: skip
        out.append(r)
        if killed is None:  # every worker still has items left after the first result
            killed = mp.active_children()[0].pid
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
    assert sorted(out) == list(range(6))
    assert len(lost) == 1 and lost[0][1:] == ("killed by SIGKILL", True)


def test_an_item_that_kills_every_worker_is_given_up(tmp_path: Path) -> None:
    lost: list[tuple[int, str, bool]] = []
    args = (str(tmp_path), 3, True)
    out = list(imap_workers(_die_on, args, range(5), 2, desc="t", progress=False, lost="skip",
                            on_lost=lambda *a: lost.append(a)))  # fmt: skip
    assert sorted(out) == [0, 1, 2, 4]  # item 3 given up after one retry, item 4 still ran
    assert [(i, retrying) for i, _, retrying in lost] == [(3, True), (3, False)]
    with pytest.raises(WorkerError, match="killed by SIGKILL during item 3, 2 time"):
        list(imap_workers(_die_on, (str(tmp_path), 3, True), [3], 1, desc="t", progress=False))


def test_a_worker_exception_is_one_line_with_the_traceback_kept() -> None:
    with pytest.raises(WorkerError) as info:
        list(imap_workers(_fail_on_2, None, range(4), 2, desc="t", progress=False))
    err = info.value
    assert isinstance(err, RLAGymError) and isinstance(err, RuntimeError)
    assert str(err) == "a t worker failed on item 2: ValueError: cannot do item 2"
    assert "Traceback" in err.details and "_fail_on_2" in err.details
