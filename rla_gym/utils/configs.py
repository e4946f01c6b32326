"""Helpers for the frozen dataclass configs."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["with_overrides"]

C = TypeVar("C")


def with_overrides(cls: type[C], config: C | None, overrides: dict[str, Any], what: str) -> C:
    """``config`` (default: ``cls()``) with ``overrides`` applied.

    Raises:
        TypeError: an override names no field of ``cls`` (the message lists the valid ones and
            names ``what`` the options belong to).
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown {what} option(s) {unknown}; valid: {sorted(names)}")
    return dataclasses.replace(config or cls(), **overrides)  # type: ignore[type-var]
