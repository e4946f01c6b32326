"""Simulator work spread over worker processes, results streamed back to the parent.

MuJoCo/EGL contexts do not survive ``fork``, so workers are *spawned*; each one builds its own
simulator once and handles a strided share of the items. Each worker reports through its own
pipe: a result per item (in the order of its share), then "exit", or the traceback of whatever
stopped it. A worker that dies without a word (SIGKILL, a segfault, the OOM killer) is noticed
by the end of its pipe: the item it was on is retried on a fresh worker (``retries`` times)
together with the rest of its share, while the other workers go on.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tqdm.auto import tqdm

from rla_gym.errors import RLAGymError

__all__ = ["KILL_ONCE_ENV", "Emit", "WorkerError", "imap_workers"]

Emit = Callable[[Any], None]
"""What a worker calls with each result."""

KILL_ONCE_ENV = "RLA_GYM_TEST_KILL_WORKER_ONCE"
"""Fault injection for tests: when this environment variable names a file that does not exist
yet, the first worker to finish an item creates it and SIGKILLs itself, exactly once per file
(the item after the finished one is then the lost one)."""


class WorkerError(RLAGymError, RuntimeError):
    """A worker raised, or workers kept dying. The message is one line; the worker's traceback
    is in ``details`` (and in the exception's notes, shown with ``RLA_GYM_DEBUG=1``)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details
        if details:
            self.add_note(details)


def _exit_with(parent: int) -> None:
    """End this worker once ``parent`` is gone: a parent killed outright (SIGTERM, SIGKILL) runs
    no cleanup, and an orphaned worker would go on writing data nobody asked for."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _kill_once() -> None:
    """The :data:`KILL_ONCE_ENV` fault, in a worker that has just reported an item."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _entry(
    worker_fn: Callable[[Any, list[Any], Emit], None],
    args: Any,
    items: list[Any],
    conn: Any,
    parent: int,
) -> None:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()

    def emit(result: Any) -> None:
        conn.send(("done", result))
        _kill_once()

    try:
        worker_fn(args, items, emit)
        conn.send(("exit", None))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        with contextlib.suppress(OSError):  # OSError: the parent is gone
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code} without reporting"


@dataclass
class _Slot:
    """One worker process, the item positions it was given and how many it reported."""

    proc: Any
    conn: Any
    positions: list[int]
    reported: int = 0


def imap_workers(
    worker_fn: Callable[[Any, list[Any], Emit], None],
    args: Any,
    items: Sequence[Any],
    workers: int,
    *,
    desc: str,
    progress: bool = True,
    postfix: Callable[[], dict[str, Any]] | None = None,
    retries: int = 1,
    lost: Literal["raise", "skip"] = "raise",
    on_lost: Callable[[Any, str, bool], None] | None = None,
) -> Iterator[Any]:
    """Yield the results of ``worker_fn(args, share, emit)`` run in up to ``workers`` processes.

    A worker that dies without reporting (killed, crashed) loses the item it was on: that item
    and the rest of the worker's share go to a fresh worker; an item lost more than ``retries``
    times is given up (``lost="raise"``: :class:`WorkerError`; ``"skip"``: no result for it and
    the run goes on). The surviving workers are never stopped by another one's death.

    Args:
        worker_fn: picklable top-level function; it receives ``args``, its share of ``items`` and
            ``emit``, which it calls exactly once per finished item, in the order of its share
            (that order tells which item a dead worker was on).
        args: picklable arguments shared by every worker.
        items: the work, split round-robin between workers.
        workers: process count (capped at ``len(items)``).
        desc: progress-bar label, also used in messages.
        progress: show a tqdm bar.
        postfix: called after each result for the bar's postfix.
        retries: fresh attempts at an item whose worker died on it.
        lost: what a given-up item does: ``"raise"`` or ``"skip"``.
        on_lost: called as ``on_lost(item, reason, retrying)`` each time a worker dies on an
            item (``reason`` e.g. ``"killed by SIGKILL"``); a line goes to stderr either way.

    Raises:
        WorkerError: a worker raised (one line; its traceback in ``details``), an item was given
            up with ``lost="raise"``, or every item of a row of ``max(3, workers)`` was given up.
    """
    items = list(items)
    if not items:
        return
    n = max(1, min(workers, len(items)))
    ctx = mp.get_context("spawn")
    attempts = [0] * len(items)

    def start(positions: list[int]) -> _Slot:
        reader, writer = ctx.Pipe(duplex=False)
        share = [items[i] for i in positions]
        proc = ctx.Process(
            target=_entry, args=(worker_fn, args, share, writer, os.getpid()), daemon=True
        )
        proc.start()
        writer.close()  # the worker holds the only writer: its death ends the pipe
        return _Slot(proc, reader, positions)

    slots = [start(list(range(w, len(items), n))) for w in range(n)]
    bar = tqdm(total=len(items), desc=desc, disable=not progress)
    given_up_in_a_row = 0

    def died(slot: _Slot) -> int | None:
        """Replace a dead worker; the position it lost if that item is given up."""
        slots.remove(slot)
        slot.conn.close()
        slot.proc.join(timeout=10)
        left = slot.positions[slot.reported :]
        if not left:
            return None  # it died after its last item: nothing lost
        pos, reason = left[0], _exit_reason(slot.proc.exitcode)
        attempts[pos] += 1
        retrying = attempts[pos] <= retries
        fate = "retrying it on a fresh worker" if retrying else "giving it up"
        tqdm.write(
            f"{desc}: worker {slot.proc.pid} {reason} during item {items[pos]!r} "
            f"(attempt {attempts[pos]}); {fate}",
            file=sys.stderr,
        )
        if on_lost is not None:
            on_lost(items[pos], reason, retrying)
        todo = left if retrying else left[1:]
        if todo:
            slots.append(start(todo))
        if retrying:
            return None
        if lost == "raise":
            raise WorkerError(
                f"a {desc} worker {reason} during item {items[pos]!r}, "
                f"{attempts[pos]} time(s); giving up"
            )
        return pos

    try:
        while slots:
            ready = mpc.wait([s.conn for s in slots], timeout=5.0)
            # A dead worker whose pipe end lives on elsewhere (a grandchild) sends no EOF.
            silent = [] if ready else [s.conn for s in slots if not s.proc.is_alive()]
            for conn in ready or silent:
                slot = next(s for s in slots if s.conn is conn)
                kind, payload = "died", None
                if conn not in silent or conn.poll():
                    with contextlib.suppress(EOFError, OSError):  # the end of a dead worker
                        kind, payload = conn.recv()
                if kind == "error":
                    pos = slot.positions[min(slot.reported, len(slot.positions) - 1)]
                    last = payload.strip().splitlines()[-1] if payload.strip() else "?"
                    raise WorkerError(
                        f"a {desc} worker failed on item {items[pos]!r}: {last}", payload
                    )
                if kind == "exit":
                    slots.remove(slot)
                    slot.conn.close()
                    slot.proc.join(timeout=10)
                    continue
                if kind == "died":
                    if died(slot) is None:
                        continue
                    bar.update(1)
                    given_up_in_a_row += 1
                    if given_up_in_a_row >= max(3, n):
                        raise WorkerError(
                            f"the {desc} workers keep dying: {given_up_in_a_row} items in a row "
                            f"were given up; stopping"
                        )
                    continue
                slot.reported += 1
                given_up_in_a_row = 0
                yield payload
                bar.update(1)
                if postfix is not None:
                    bar.set_postfix(**postfix())
    finally:
        bar.close()
        for s in slots:
            if s.proc.is_alive():
                s.proc.terminate()
        for s in slots:
            s.proc.join(timeout=10)
            s.conn.close()
