"""Build a real-simulator adapter by name, importing only the simulator that is asked for."""

from __future__ import annotations

from typing import Any

from rla_gym.sims.base import SimAdapter

__all__ = ["DEFAULT_TASKS", "SIMS", "make_sim"]

SIMS: tuple[str, ...] = ("libero", "robosuite", "dmc")

DEFAULT_TASKS: dict[str, str] = {
    "libero": "libero_object/0",
    "robosuite": "Lift",
    "dmc": "reacher-easy",
}


def make_sim(sim: str, task: str | None = None, resolution: int = 128, **kwargs: Any) -> SimAdapter:
    """Create the adapter for ``sim`` / ``task``.

    Args:
        sim: ``"libero"``, ``"robosuite"`` or ``"dmc"``.
        task: task name within the simulator; ``None`` picks :data:`DEFAULT_TASKS` ``[sim]``.
        resolution: square camera resolution (positive multiple of 16).
        **kwargs: passed to the adapter (e.g. ``camera``, ``horizon`` for robosuite; ``max_steps``,
            ``camera_id`` for dmc).

    Raises:
        ValueError: unknown simulator (or, from the adapter, unknown task).
        MissingExtraError: the simulator package is not installed.
    """
    if sim not in SIMS:
        raise ValueError(f"unknown simulator {sim!r}; choose one of: {', '.join(SIMS)}")
    task = DEFAULT_TASKS[sim] if task is None else task
    # Imports are local so that asking for one simulator never imports the others.
    if sim == "libero":
        from rla_gym.sims.libero import LiberoSim

        return LiberoSim(task, resolution, **kwargs)
    if sim == "robosuite":
        from rla_gym.sims.robosuite import RobosuiteSim

        return RobosuiteSim(task, resolution, **kwargs)
    from rla_gym.sims.dmc import DMCSim

    return DMCSim(task, resolution, **kwargs)
