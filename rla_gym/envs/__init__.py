"""Dreamed Gymnasium environments (RLA-WM as a learned simulator) and their registration.

Importing this package registers the env ids with string entry points only: no torch, no
simulator and no world model is imported until an env is made.

==============================  =========================================
id                              artifacts (default)
==============================  =========================================
``RLAWorld-libero-v0``          ``rla_gym/envs/assets/libero/``
``RLAWorld-robosuite-lift-v0``  ``rla_gym/envs/assets/robosuite-lift/``
``RLAWorld-dmc-reacher-v0``     ``rla_gym/envs/assets/dmc-reacher/``
==============================  =========================================

The episode horizon is the bundle's (``manifest.json`` ``max_episode_steps``, overridable with the
``max_episode_steps`` env option) and the env truncates itself, so the registrations carry no
``max_episode_steps``: a second number here could only disagree with the bundle in use.

``RealFeatureEnv`` is the real simulator behind the same spaces (features of the rendered frame,
action chunks, the task's own reward): the baseline a dream-trained policy is compared with.

An env whose bundle is not built raises ``ArtifactsNotFoundError`` naming the build command
(``rla-gym build-bundle``, :mod:`rla_gym.pipelines.build_bundle`); pass ``artifacts=<folder>`` to
use any bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

if TYPE_CHECKING:
    from rla_gym.envs.artifacts import Artifacts, load_artifacts
    from rla_gym.envs.real import RealFeatureConfig, RealFeatureEnv
    from rla_gym.envs.rla_world import RLAWorldConfig, RLAWorldEnv
    from rla_gym.envs.vector import RLAWorldVectorEnv

__all__ = [
    "ENV_IDS",
    "SUITE_IDS",
    "Artifacts",
    "RLAWorldConfig",
    "RLAWorldEnv",
    "RLAWorldVectorEnv",
    "RealFeatureConfig",
    "RealFeatureEnv",
    "load_artifacts",
]

# Suite name -> env id (the suite names the embedded bundle folder under assets/).
SUITE_IDS: dict[str, str] = {
    "libero": "RLAWorld-libero-v0",
    "robosuite-lift": "RLAWorld-robosuite-lift-v0",
    "dmc-reacher": "RLAWorld-dmc-reacher-v0",
}
ENV_IDS: tuple[str, ...] = tuple(SUITE_IDS.values())

for _suite, _id in SUITE_IDS.items():
    if _id not in registry:
        register(
            id=_id,
            entry_point="rla_gym.envs.rla_world:RLAWorldEnv",
            vector_entry_point="rla_gym.envs.vector:RLAWorldVectorEnv",
            kwargs={"suite": _suite},
        )

_LAZY = {
    "Artifacts": "rla_gym.envs.artifacts",
    "load_artifacts": "rla_gym.envs.artifacts",
    "RLAWorldConfig": "rla_gym.envs.rla_world",
    "RLAWorldEnv": "rla_gym.envs.rla_world",
    "RLAWorldVectorEnv": "rla_gym.envs.vector",
    "RealFeatureConfig": "rla_gym.envs.real",
    "RealFeatureEnv": "rla_gym.envs.real",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
