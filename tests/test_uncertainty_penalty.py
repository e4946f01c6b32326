"""The dreamed reward can charge the world model's own spread (``uncertainty_penalty``): the same
dream, a reward lower by exactly the weight times the spread (tiny bundle, CPU, a few seconds)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from rla_gym.envs.rla_world import RLAWorldConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_penalty_lowers_the_reward_by_its_weight_times_the_spread(bundle: Path) -> None:
    from rla_gym.envs.vector import RLAWorldVectorEnv

    measured = RLAWorldConfig(artifacts=str(bundle), flow_steps=2, num_uncertainty_samples=3)
    charged = dataclasses.replace(measured, uncertainty_penalty=2.5)
    rng = np.random.default_rng(0)
    envs = [RLAWorldVectorEnv(3, config=c) for c in (measured, charged)]
    for env in envs:
        env.reset(seed=[0, 1, 2])
    for _ in range(2):
        act = rng.uniform(-1, 1, size=envs[0].action_space.shape).astype(np.float32)
        (obs0, r0, _, _, i0), (obs1, r1, _, _, i1) = (env.step(act) for env in envs)
        np.testing.assert_array_equal(obs0, obs1)  # the dream is the same
        np.testing.assert_allclose(i0["uncertainty"], i1["uncertainty"], rtol=1e-6)
        assert np.all(i1["uncertainty"] > 0)
        np.testing.assert_allclose(r1, r0 - 2.5 * i1["uncertainty"], rtol=1e-5, atol=1e-7)
    for env in envs:
        env.close()
    with pytest.raises(ValueError, match="needs num_uncertainty_samples >= 2"):
        RLAWorldConfig(uncertainty_penalty=1.0)
    with pytest.raises(ValueError, match="finite weight >= 0"):
        RLAWorldConfig(uncertainty_penalty=-1.0, num_uncertainty_samples=2)


def test_wmrl_checks_the_penalty_and_resumes_runs_stored_before_it(tmp_path: Path) -> None:
    from rla_gym.pipelines.wmrl import ResumeMismatchError, WMRLConfig, _check_resume

    with pytest.raises(ValueError, match="--uncertainty-penalty must be >= 0"):
        WMRLConfig(uncertainty_penalty=-0.1)
    with pytest.raises(ValueError, match="--uncertainty-samples >= 2"):
        WMRLConfig(uncertainty_samples=1)
    options = tmp_path / "options.json"
    _check_resume(WMRLConfig(), options)
    stored = json.loads(options.read_text())
    for key in ("uncertainty_penalty", "uncertainty_samples"):  # a run from before the option
        del stored[key]
    options.write_text(json.dumps(stored))
    _check_resume(WMRLConfig(), options)  # ran at the default: resumes
    with pytest.raises(ResumeMismatchError, match=r"uncertainty_penalty: 0.0 -> 20.0"):
        _check_resume(WMRLConfig(uncertainty_penalty=20.0), options)
