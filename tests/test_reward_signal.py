"""``benchmarks/reward_signal.py``: does a reward answer a change of the actions or the noise?"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_script import load_benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_signal_stats_tell_an_answer_to_the_action_from_an_answer_to_the_noise() -> None:
    bench = load_benchmark("reward_signal")
    rng = np.random.default_rng(0)
    starts, dirs = 32, 8
    effect = rng.normal(size=(starts, dirs + 1, 1))
    effect[:, 0] = 0.0  # the base alone
    base = rng.normal(size=(starts, 1, 1)) * 5  # starts differ a lot; that is not noise
    success = np.zeros((starts, dirs + 1, 2), bool)
    # A reward that answers the action alone: the same change under both seeds.
    clean = bench.signal_stats(np.broadcast_to(base + effect, (starts, dirs + 1, 2)), success)
    assert clean["consistency"] == pytest.approx(1.0)
    assert clean["best_gain_in_sample"] > 0
    assert clean["best_gain_held_out"] == pytest.approx(clean["best_gain_in_sample"])
    assert clean["noise_std"] == 0.0
    # A reward that answers the noise alone: the chosen change gains nothing under fresh noise.
    noisy = bench.signal_stats(base + rng.normal(size=(starts, dirs + 1, 2)), success)
    assert abs(noisy["consistency"]) < 0.25
    assert noisy["best_gain_in_sample"] > 1.0 > abs(noisy["best_gain_held_out"]) * 3
    assert noisy["noise_std"] > 0.5


def test_returns_pair_every_change_with_the_base_under_the_same_noise(
    bundle: Path, tmp_path: Path
) -> None:
    from rla_gym.agents import ActorCritic, ActorCriticConfig

    bench = load_benchmark("reward_signal")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    torch.manual_seed(0)
    ActorCritic((4, 16), 16, ActorCriticConfig(token_dim=8, feature_dim=16, actor_hidden=(16,),
                critic_hidden=(16,), mlp_hidden=(16,))).save(copy / "policy")  # fmt: skip
    args = bench.Args(suites=(), reward_modes=("aligned", "goal"), starts=3, directions=2,
                      scale=1.0, flow_steps=1, block=1, out=tmp_path / "rs.json")  # fmt: skip
    one, facts = bench.returns_by_mode(copy, args)
    assert len(facts["starts"]) == 3 and facts["starts"][0] == 0
    assert one["aligned"]["returns"].shape == (3, 3, 2)
    # Pairs are fixed by start and seed, not by where an episode sits in the batch.
    batched, _ = bench.returns_by_mode(copy, dataclasses.replace(args, block=3))
    np.testing.assert_allclose(batched["aligned"]["returns"], one["aligned"]["returns"], rtol=1e-5)
    ret = one["aligned"]["returns"]
    assert not np.allclose(ret[:, :, 0], ret[:, :, 1])  # two seeds: two noises
    # the changes change the dream (the tiny world model answers actions only a little)
    assert np.abs(ret[:, 1:] - ret[:, :1]).max() > 0
    assert not np.allclose(one["goal"]["returns"], ret)  # one dream, scored per mode
    with pytest.raises(ValueError, match="--scale must be in"):
        bench.Args(scale=0.0)
