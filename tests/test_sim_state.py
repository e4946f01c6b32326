"""Exact simulator save/restore in all three adapters (real simulators, a few steps each).

The counterfactual benchmark restores one real state many times and compares the outcomes of
different actions from it; that is only meaningful if a restore is exact: the same actions must
give bit-identical frames, features and state whatever ran before the restore.
"""

from __future__ import annotations

import numpy as np
import pytest

from rla_gym.sims.base import SimAdapter

pytestmark = pytest.mark.sim


@pytest.fixture(params=["dmc", "robosuite", "libero"])
def sim(request: pytest.FixtureRequest) -> SimAdapter:
    # The session's shared simulators (tests/conftest.py): building them dominates the cost.
    return request.getfixturevalue(f"{request.param}_sim")


def _actions(sim: SimAdapter, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (n, sim.action_dim)).astype(np.float32)
    if sim.sim != "dmc":
        a[:, -1] = np.where(np.arange(n) % 6 < 3, 1.0, -1.0)  # close and open the gripper
    return a


def _run(sim: SimAdapter, actions: np.ndarray, render: str = "all"):
    """Step through ``actions`` rendering ``"all"``, ``"last"`` or ``"none"`` of the frames."""
    frames, proprio = [], []
    for i, a in enumerate(actions):
        obs = sim.step(a, render=render == "all" or (render == "last" and i == len(actions) - 1))
        frames.append(obs.frame)
        proprio.append(obs.proprio)
    return np.stack(frames), np.stack(proprio), sim.get_sim_state()


def test_restore_replays_exactly_after_other_actions(sim: SimAdapter) -> None:
    sim.reset(seed=3)
    _run(sim, _actions(sim, 4, 0), "none")  # a mid-episode state with the gripper half way
    saved = sim.get_sim_state()
    assert saved.dtype == np.float64 and saved.shape == (sim.state_size,)
    probe = _actions(sim, 4, 1)
    frames, proprio, end = _run(sim, probe)  # the run the state was saved from, continued

    _run(sim, _actions(sim, 4, 2), "none")  # unrelated actions, then another episode
    sim.reset(seed=4)
    _run(sim, _actions(sim, 2, 3), "none")
    for _ in range(3):  # repeated restores must not shift anything either
        back = sim.set_sim_state(saved)
    np.testing.assert_array_equal(sim.get_sim_state(), saved)
    assert back.frame.std() > 1  # a rendered frame
    frames2, proprio2, end2 = _run(sim, probe)
    np.testing.assert_array_equal(frames2, frames)
    np.testing.assert_array_equal(proprio2, proprio)
    np.testing.assert_array_equal(end2, end)

    # Same frames -> same features (the tiny encoder stands in for any deterministic one).
    from rla_gym.features import make_encoder

    enc = make_encoder("tiny")
    np.testing.assert_array_equal(enc.encode(frames2[-1:]), enc.encode(frames[-1:]))


def test_unrendered_steps_reach_the_same_frame(sim: SimAdapter) -> None:
    sim.reset(seed=5)
    saved = sim.get_sim_state()
    probe = _actions(sim, 5, 4)
    frames, proprio, end = _run(sim, probe)
    sim.set_sim_state(saved)
    lazy, lazy_proprio, lazy_end = _run(sim, probe, "last")
    assert not lazy[:-1].any()  # skipped frames are black
    np.testing.assert_array_equal(lazy[-1], frames[-1])
    np.testing.assert_array_equal(lazy_proprio, proprio)
    np.testing.assert_array_equal(lazy_end, end)
    # ... and rendering resumes normally afterwards.
    more = _actions(sim, 2, 5)
    after_lazy = _run(sim, more)[0]
    sim.set_sim_state(end)
    np.testing.assert_array_equal(_run(sim, more)[0], after_lazy)


def test_bad_states_raise_clear_errors(sim: SimAdapter) -> None:
    sim.reset(seed=0)
    state = sim.get_sim_state()
    size = sim.state_size
    wrong = rf"expects a state of shape \({size},\), got \({size + 1},"
    with pytest.raises(ValueError, match=wrong):
        sim.set_sim_state(np.append(state, 0.0))
    with pytest.raises(ValueError, match="expects a state of shape"):
        sim.set_sim_state(state[None])
    foreign = state.copy()
    foreign[0] += 1.0  # the identity tag of another task
    with pytest.raises(ValueError, match=f"not saved by {sim.sim}/"):
        sim.set_sim_state(foreign)
    broken = state.copy()
    broken[-1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sim.set_sim_state(broken)


def test_state_from_another_task_is_rejected() -> None:
    pytest.importorskip("dm_control")
    from rla_gym.sims.dmc import DMCSim

    reacher, cartpole = (
        DMCSim("reacher-easy", resolution=32),
        DMCSim("cartpole-swingup", resolution=32),
    )
    try:
        reacher.reset(seed=0)
        with pytest.raises(ValueError, match="not saved by dmc/cartpole-swingup"):
            cartpole.set_sim_state(reacher.get_sim_state())
    finally:
        reacher.close()
        cartpole.close()
