"""Small shared helpers: device choice, atomic file writes, run provenance."""

from __future__ import annotations

from rla_gym.utils.device import resolve_device
from rla_gym.utils.io import atomic_path, load_json, save_json
from rla_gym.utils.provenance import provenance

__all__ = ["atomic_path", "load_json", "provenance", "resolve_device", "save_json"]
