"""Simulator work spread over worker processes, results streamed back to the parent.

MuJoCo/EGL contexts do not survive ``fork``, so workers are *spawned*; each one builds its own
simulator once and handles a strided share of the items. Workers report through one queue:
a result per item, then "exit", or the traceback of whatever stopped them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Emit", "imap_workers"]

Emit = Callable[[Any], None]
"""What a worker calls with each result."""


def _exit_with(parent: int) -> None:
    """End this worker once ``parent`` is gone: a parent killed outright (SIGTERM, SIGKILL) runs
    no cleanup, and an orphaned worker would go on writing data nobody asked for."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _entry(
    worker_fn: Callable[[Any, list[Any], Emit], None],
    args: Any,
    items: list[Any],
    out_q: Any,
    parent: int,
) -> None:
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    try:
        worker_fn(args, items, lambda result: out_q.put(("done", result)))
        out_q.put(("exit", None))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        out_q.put(("error", traceback.format_exc()))


def imap_workers(
    worker_fn: Callable[[Any, list[Any], Emit], None],
    args: Any,
    items: Sequence[Any],
    workers: int,
    *,
    desc: str,
    progress: bool = True,
    postfix: Callable[[], dict[str, Any]] | None = None,
) -> Iterator[Any]:
    """Yield the results of ``worker_fn(args, share, emit)`` run in up to ``workers`` processes.

    Args:
        worker_fn: picklable top-level function; it receives ``args``, its share of ``items`` and
            ``emit``, which it calls once per finished item.
        args: picklable arguments shared by every worker.
        items: the work, split round-robin between workers.
        workers: process count (capped at ``len(items)``).
        desc: progress-bar label, also used in error messages.
        progress: show a tqdm bar.
        postfix: called after each result for the bar's postfix.

    Raises:
        RuntimeError: a worker failed (with its traceback) or all died without reporting.
    """
    items = list(items)
    if not items:
        return
    n = max(1, min(workers, len(items)))
    ctx = mp.get_context("spawn")
    out_q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_entry, args=(worker_fn, args, items[w::n], out_q, os.getpid()), daemon=True
        )
        for w in range(n)
    ]
    for p in procs:
        p.start()
    bar = tqdm(total=len(items), desc=desc, disable=not progress)
    running = n
    try:
        while running:
            try:
                kind, payload = out_q.get(timeout=5.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError(f"all {desc} workers died without reporting") from None
                continue
            if kind == "error":
                raise RuntimeError(f"a {desc} worker failed:\n{payload}")
            if kind == "exit":
                running -= 1
                continue
            yield payload
            bar.update(1)
            if postfix is not None:
                bar.set_postfix(**postfix())
    finally:
        bar.close()
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=10)
