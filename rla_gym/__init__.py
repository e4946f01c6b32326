"""rla-gym: the RLA-WM feature-space world model as a learned simulator for robot RL.

Importing this package is cheap: it pulls in no simulator, no encoder runtime and no torch model.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "envs"]

# Registers the RLAWorld-* Gymnasium ids (string entry points: imports gymnasium only).
from rla_gym import envs
