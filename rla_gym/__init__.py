"""rla-gym: the RLA-WM feature-space world model as a learned simulator for robot RL.

Importing this package is cheap: it pulls in no simulator, no encoder runtime and no torch model.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "envs", "load_model"]

# Registers the RLAWorld-* Gymnasium ids (string entry points: imports gymnasium only).
from rla_gym import envs


def __getattr__(name: str) -> Any:
    # load_model imports every model room (torch); pay for that only when it is asked for.
    if name == "load_model":
        from rla_gym.models import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
