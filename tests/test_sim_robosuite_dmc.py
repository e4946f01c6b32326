"""Real-simulator tests for the robosuite and dm-control adapters, their experts and policies.

One environment per simulator (session-scoped, tests/conftest.py) at a small resolution keeps the
file well under a minute on two CPU cores.
"""

from __future__ import annotations

import numpy as np
import pytest

from rla_gym.sims.base import SimAdapter, SimStep
from rla_gym.sims.factory import make_sim
from rla_gym.sims.policies import (
    LiftExpert,
    PlayPolicy,
    Policy,
    RandomPolicy,
    ReacherExpert,
    make_policy,
)

pytestmark = pytest.mark.sim

RES = 64


@pytest.fixture
def rs(robosuite_sim: SimAdapter) -> SimAdapter:
    return robosuite_sim  # one env per simulator for the session (tests/conftest.py)


@pytest.fixture
def dmc(dmc_sim: SimAdapter) -> SimAdapter:
    return dmc_sim


@pytest.fixture(params=["rs", "dmc"])
def sim(request: pytest.FixtureRequest) -> SimAdapter:
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------- adapters


def test_metadata(rs: SimAdapter, dmc: SimAdapter) -> None:
    assert (rs.sim, rs.task, rs.action_dim, rs.max_steps, rs.num_init_states) == (
        "robosuite",
        "Lift",
        7,
        200,
        None,
    )
    assert (dmc.sim, dmc.task, dmc.action_dim, dmc.max_steps, dmc.num_init_states) == (
        "dmc",
        "reacher-easy",
        2,
        200,
        None,
    )
    np.testing.assert_array_equal(rs.action_low, -1.0)
    np.testing.assert_array_equal(dmc.action_high, 1.0)


def test_frame_and_proprio(sim: SimAdapter) -> None:
    obs = sim.reset(seed=0)
    assert obs.frame.shape == (RES, RES, 3) and obs.frame.dtype == np.uint8
    assert obs.frame.std() > 5  # an actual image, not a blank buffer
    assert obs.proprio.dtype == np.float32
    assert obs.proprio.shape == ((9,) if sim.sim == "robosuite" else (4,))
    assert obs.reward == 0.0 and not obs.success
    step = sim.step(np.zeros(sim.action_dim, dtype=np.float32))
    assert step.frame.shape == (RES, RES, 3) and step.proprio.shape == obs.proprio.shape


def test_robosuite_frame_upright(rs: SimAdapter) -> None:
    # agentview: the dark robot base is at the top of the picture, the white table at the bottom.
    frame = rs.reset(seed=0).frame.astype(np.float32)
    quarter = RES // 4
    assert frame[-quarter:].mean() > frame[:quarter].mean() + 30


def test_dmc_frame_upright(dmc: SimAdapter) -> None:
    # The fixed camera looks straight down with world +y up in the image: the red target's pixel
    # centroid must be on the same side of the centre as its world y coordinate.
    for seed in range(20):
        obs = dmc.reset(seed=seed)
        ty = float(obs.state["target_pos"][1])
        if abs(ty) > 0.08:
            break
    f = obs.frame.astype(np.int16)
    red = (f[..., 0] > f[..., 1] + 40) & (f[..., 0] > f[..., 2] + 40)
    assert red.sum() > 10
    row = np.nonzero(red)[0].mean()
    assert (row < RES / 2) == (ty > 0)


def test_dmc_fovy_zooms_in(dmc: SimAdapter) -> None:
    from rla_gym.sims.dmc import DMCSim

    def arm_pixels(frame: np.ndarray) -> int:
        # The arm's capsules are orange (R > G > B, G above 0.6 R); the target is redder and the
        # floor blue, so neither counts.
        r, g, b = (frame[..., c].astype(np.int16) for c in range(3))
        return int(((r > 120) & (g > 0.6 * r) & (b < 0.75 * g)).sum())

    zoomed = DMCSim("reacher-easy", resolution=RES, fovy=38)
    try:
        assert (dmc.fovy, zoomed.fovy) == (None, 38)
        for seed in (0, 1):
            wide, narrow = dmc.reset(seed=seed), zoomed.reset(seed=seed)
            np.testing.assert_array_equal(wide.proprio, narrow.proprio)  # same scene
            # Linear size grows by tan(22.5 deg) / tan(19 deg) = 1.2, so the area by ~1.45.
            assert arm_pixels(narrow.frame) > 1.25 * arm_pixels(wide.frame) > 0
    finally:
        zoomed.close()
    for bad in (0.0, 180.0, -5.0):
        with pytest.raises(ValueError, match="fovy"):
            DMCSim("reacher-easy", resolution=RES, fovy=bad)
    with pytest.raises(ValueError, match="model camera"):
        DMCSim("reacher-easy", resolution=RES, camera_id=2, fovy=38)


def test_seeded_reset_is_deterministic(sim: SimAdapter) -> None:
    a = sim.reset(seed=7)
    sim.step(np.full(sim.action_dim, 0.5, dtype=np.float32))
    b = sim.reset(seed=7)
    c = sim.reset(seed=8)
    np.testing.assert_array_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.proprio, b.proprio)
    assert not np.array_equal(a.frame, c.frame)


def test_reset_leaves_global_rng_alone(rs: SimAdapter) -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    rs.reset(seed=5)
    assert np.random.random() == expected


def test_sim_state_round_trip(sim: SimAdapter) -> None:
    start = sim.reset(seed=3)
    state = sim.get_sim_state()
    assert state.dtype == np.float64 and state.ndim == 1
    for _ in range(5):
        sim.step(np.full(sim.action_dim, 0.8, dtype=np.float32))
    # A different episode in between: for reacher this also moves the target (a model quantity).
    sim.reset(seed=4)
    back = sim.set_sim_state(state)
    np.testing.assert_allclose(back.proprio, start.proprio, atol=1e-6)
    np.testing.assert_array_equal(back.frame, start.frame)
    np.testing.assert_allclose(sim.get_sim_state(), state, atol=1e-9)
    for key, value in start.state.items():
        np.testing.assert_allclose(back.state[key], value, atol=1e-6, err_msg=key)


def test_action_validation(sim: SimAdapter) -> None:
    sim.reset(seed=0)
    a = sim.action_dim
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros(a + 1, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        sim.step(np.full(a, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="outside"):
        sim.step(np.full(a, 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match="init states"):
        sim.reset(init_state_id=0)


def test_unknown_tasks_and_bad_arguments() -> None:
    pytest.importorskip("robosuite")
    pytest.importorskip("dm_control")
    from rla_gym.sims.dmc import DMCSim, parse_dmc_task
    from rla_gym.sims.robosuite import RobosuiteSim

    with pytest.raises(ValueError, match="Lift"):
        RobosuiteSim("NoSuchTask")
    with pytest.raises(ValueError, match="multiple of 16"):
        RobosuiteSim("Lift", resolution=100)
    with pytest.raises(ValueError, match="reacher-easy"):
        DMCSim("reacher-impossible")
    with pytest.raises(ValueError, match="multiple of 16"):
        DMCSim(resolution=0)
    assert parse_dmc_task("reacher_easy") == ("reacher", "easy")
    assert parse_dmc_task("reacher-easy") == ("reacher", "easy")
    assert parse_dmc_task("ball_in_cup-catch") == ("ball_in_cup", "catch")


# ---------------------------------------------------------------------------- policies


def test_lift_expert_approaches_cube(rs: SimAdapter) -> None:
    obs = rs.reset(seed=11)
    expert = make_policy("expert", rs)
    assert isinstance(expert, LiftExpert) and isinstance(expert, Policy)
    expert.reset(obs)
    d0 = np.linalg.norm(obs.state["cube_pos"] - obs.state["eef_pos"])
    for _ in range(40):
        obs = rs.step(expert(obs))
    d1 = np.linalg.norm(obs.state["cube_pos"] - obs.state["eef_pos"])
    assert d1 < 0.03 and d1 < 0.5 * d0, (d0, d1)


def test_reacher_expert_reaches_target(dmc: SimAdapter) -> None:
    obs = dmc.reset(seed=11)
    expert = make_policy("expert", dmc)
    assert isinstance(expert, ReacherExpert)
    expert.reset(obs)
    d0 = np.linalg.norm(obs.state["to_target"])
    for _ in range(60):
        obs = dmc.step(expert(obs))
    assert np.linalg.norm(obs.state["to_target"]) < 0.5 * d0
    assert obs.success and obs.reward == 1.0


@pytest.mark.parametrize("kind", ["noisy", "random", "play"])
def test_data_policies_stay_in_bounds(sim: SimAdapter, kind: str) -> None:
    obs = sim.reset(seed=1)
    policy = make_policy(kind, sim, seed=2)
    policy.reset(obs)
    for _ in range(10):
        action = policy(obs)
        assert action.dtype == np.float32 and action.shape == (sim.action_dim,)
        obs = sim.step(action)  # the adapter itself validates the bounds


def test_play_policy_is_smooth_and_holds_gripper() -> None:
    low, high = -np.ones(7, np.float32), np.ones(7, np.float32)
    play = PlayPolicy(low, high, seed=0, gripper_dim=-1)
    rand = RandomPolicy(low, high, seed=0)
    dummy = SimStep(frame=np.zeros((16, 16, 3), np.uint8), proprio=np.zeros(3, np.float32))
    play.reset(dummy)
    p = np.stack([play(dummy) for _ in range(300)])
    r = np.stack([rand(dummy) for _ in range(300)])
    # Consecutive play actions are much closer than consecutive random ones.
    assert np.abs(np.diff(p[:, :6], axis=0)).mean() < 0.5 * np.abs(np.diff(r[:, :6], axis=0)).mean()
    assert set(np.unique(p[:, 6])) == {-1.0, 1.0}
    assert (np.diff(p[:, 6]) != 0).sum() < 300 / 10  # held for >= 10 steps at a time


def test_factories_reject_unknown_names(dmc: SimAdapter) -> None:
    with pytest.raises(ValueError, match="expert, noisy, random, play"):
        make_policy("teleop", dmc)
    with pytest.raises(ValueError, match="libero, robosuite, dmc"):
        make_sim("isaac")


def test_interleaved_renderers_stay_correct(rs: SimAdapter, dmc: SimAdapter) -> None:
    # Both simulators render through EGL in one thread; each must rebind its own GL context,
    # otherwise the one rendering second gets black or stale frames.
    rs_ref = rs.reset(seed=21).frame
    dmc_ref = dmc.reset(seed=21).frame
    for _ in range(2):
        np.testing.assert_array_equal(rs.reset(seed=21).frame, rs_ref)
        np.testing.assert_array_equal(dmc.reset(seed=21).frame, dmc_ref)
    assert rs_ref.std() > 5 and dmc_ref.std() > 5
