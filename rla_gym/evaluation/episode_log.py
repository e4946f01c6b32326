"""The on-disk record of a real-simulator evaluation, so that no finished episode is lost.

An evaluation's episodes depend on the policy and on the evaluation settings; their fingerprint,
:func:`eval_header`, heads the append-only :class:`EpisodeLog` and is compared whenever a log or
report is resumed, so that episodes of another policy, task or horizon are never merged in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rla_gym.errors import CorruptFileError, RLAGymError
from rla_gym.utils.io import to_jsonable

__all__ = ["EpisodeLog", "EvaluationMismatchError", "check_same_evaluation", "eval_header"]


class EvaluationMismatchError(RLAGymError, ValueError):
    """An output or episode log of another evaluation (policy, simulator, task, seeds, horizon
    or settings differ) was about to be resumed or merged into."""


def eval_header(identity: dict[str, Any] | None, cfg: Any) -> dict[str, Any]:
    """What an evaluation's episodes depend on: ``identity`` (the policy: its path, kind, a
    digest...) and every field of ``cfg`` (a ``RealEvalConfig``, not imported here: the
    evaluation imports this log, not the other way round) but the worker count, the episode
    count and videos, which change no episode (episode ``i`` is always seed ``cfg.seed + i`` /
    init state ``i``)."""
    excluded = ("workers", "episodes", "videos", "video_dir")
    return {
        "policy": to_jsonable(identity or {}),
        "eval": {k: v for k, v in to_jsonable(cfg).items() if k not in excluded},
    }


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted keys at which two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        return [
            d for k in keys for d in _differences(a.get(k), b.get(k), f"{where}.{k}".lstrip("."))
        ]
    return [] if a == b else [f"{where or 'value'} ({b!r} there, {a!r} here)"]


def check_same_evaluation(header: dict[str, Any], found: Any, path: Path) -> None:
    """Raise :class:`EvaluationMismatchError` unless ``found`` (the header stored in ``path``)
    is ``header``; the message names what differs."""
    if found == header:
        return
    diff = _differences(header, found) if isinstance(found, dict) else ["it has no header"]
    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
    raise EvaluationMismatchError(
        f"{path} holds another evaluation (differs in {'; '.join(diff[:3])}{more}); "
        f"delete it, choose another output path, or start over (rla-gym eval --no-resume)"
    )


class EpisodeLog:
    """Append-only JSON-lines log of an evaluation: a header, then one line per finished episode
    (``{"index": i, ...}``) or per episode given up (``{"not_run": i, "reason": ...}``).

    Each line is written with one ``write`` on an ``O_APPEND`` descriptor and fsynced, so a run
    killed at any moment leaves every finished episode on disk and at most a torn last line,
    which the next open drops.
    """

    def __init__(self, path: Path, header: dict[str, Any], fresh: bool = False) -> None:
        """Open ``path`` for ``header``, keeping its episodes unless ``fresh``.

        Raises:
            EvaluationMismatchError: ``path`` logs another evaluation.
        """
        self.path = Path(path)
        self.rows: dict[int, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [] if fresh or not self.path.exists() else self._read()
        if lines:
            first = lines[0] if isinstance(lines[0], dict) else {}
            check_same_evaluation(header, first.get("header"), self.path)
            self.rows = {int(r["index"]): r for r in lines[1:] if "index" in r}
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if lines else os.O_TRUNC)
        self._fd = os.open(self.path, flags, 0o644)
        if not lines:
            self.append({"header": header})

    def _read(self) -> list[dict[str, Any]]:
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # torn last line of a killed run: drop it
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as fh:
                fh.truncate(len(raw))
        out = []
        for i, line in enumerate(raw.decode().splitlines()):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CorruptFileError(
                    f"{self.path} line {i + 1} is not JSON ({err}); delete the file to start over"
                ) from err
        return out

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line, on disk when this returns."""
        data = memoryview((json.dumps(to_jsonable(record)) + "\n").encode())
        while data:
            data = data[os.write(self._fd, data) :]
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the log (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
