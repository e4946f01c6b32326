"""The counterfactual benchmark's metrics on closed-form cases, and one tiny real run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rla_gym.evaluation.counterfactual import (
    CounterfactualConfig,
    dream_outcomes,
    outcome_metrics,
    pair_agreement,
)
from rla_gym.sims.policies import perturbed_sequences

S, M, N, D = 3, 4, 2, 5


@pytest.fixture
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    start = rng.normal(size=(S, N, D)).astype(np.float32)
    real = start[:, None] + rng.normal(size=(S, M, N, D)).astype(np.float32)
    reference = rng.normal(size=(S, N, D)).astype(np.float32)
    return start, real, reference


def test_a_perfect_dream_scores_one(case) -> None:
    start, real, reference = case
    m = outcome_metrics(start, real, real.copy(), reference)
    assert m["direction"] == pytest.approx(1.0)
    assert m["magnitude_ratio"] == pytest.approx(1.0)
    assert m["ranking_spearman"] == pytest.approx(1.0)
    assert m["l1"] == 0.0
    assert (m["states"], m["pairs"], m["ranked_states"]) == (S, S * M * (M - 1) // 2, S)
    assert m["copy_last_l1"] == pytest.approx(np.abs(real - start[:, None]).mean())
    assert m["direction_se"] == pytest.approx(0.0, abs=1e-7)  # every start agrees perfectly


def test_scaled_shifted_and_reversed_dreams(case) -> None:
    start, real, _ = case
    # Twice the real differences plus a common offset: same direction, double magnitude.
    m = outcome_metrics(start, real, 2 * real + 3.0)
    assert m["direction"] == pytest.approx(1.0)
    assert m["magnitude_ratio"] == pytest.approx(2.0)
    assert m["ranking_spearman"] is None  # no reference given
    # Mirrored differences: opposite direction, same magnitude.
    m = outcome_metrics(start, real, -real)
    assert m["direction"] == pytest.approx(-1.0)
    assert m["magnitude_ratio"] == pytest.approx(1.0)


def test_a_dream_deaf_to_actions_scores_zero(case) -> None:
    start, real, reference = case
    deaf = np.repeat(start[:, None], M, axis=1)  # every action sequence -> the same outcome
    m = outcome_metrics(start, real, deaf, reference)
    assert m["direction"] == 0.0 and m["magnitude_ratio"] == 0.0
    assert m["ranking_spearman"] is None  # constant dreamed distances rank nothing
    assert m["l1"] == pytest.approx(m["copy_last_l1"])


def test_orthogonal_differences_and_dropped_pairs() -> None:
    real = np.zeros((3, 1, 2), np.float32)
    real[1, 0, 0] = 1.0  # real_1 - real_0 = e0
    real[2] = real[0]  # real_2 == real_0: that pair has no direction and is dropped
    dream = np.zeros_like(real)
    dream[1, 0, 1] = 3.0  # dream_1 - dream_0 = 3 e1, orthogonal to the real difference
    cos, ratio = pair_agreement(real, dream)
    assert cos.shape == (2,)  # pairs (0, 1) and (1, 2); (0, 2) dropped
    np.testing.assert_allclose(cos, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(ratio, [3.0, 3.0])


def test_ranking_reversed() -> None:
    ref = np.zeros((1, 1, 1), np.float32)
    real = np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1)  # distances 0, 1, 2, 3
    dream = real[:, ::-1].copy()  # distances 3, 2, 1, 0
    m = outcome_metrics(np.zeros((1, 1, 1), np.float32), real, dream, ref)
    assert m["ranking_spearman"] == pytest.approx(-1.0)


def test_bad_shapes_raise(case) -> None:
    start, real, reference = case
    with pytest.raises(ValueError, match=r"\(S, M, N, D\)"):
        outcome_metrics(start, real, real[:, :2])
    with pytest.raises(ValueError, match="start must be"):
        outcome_metrics(start[:2], real, real)
    with pytest.raises(ValueError, match="reference must"):
        outcome_metrics(start, real, real, reference[:, :1])
    with pytest.raises(ValueError, match="horizons"):
        CounterfactualConfig(horizons=(0,))


def test_sequences_are_recorded_noisy_and_random() -> None:
    rec = np.full((16, 3), 0.95, np.float32)
    seqs = perturbed_sequences(rec, (0.1, 0.3), np.random.default_rng(0))
    assert seqs.shape == (4, 16, 3) and seqs.dtype == np.float32
    np.testing.assert_array_equal(seqs[0], rec)
    assert np.abs(seqs).max() <= 1.0  # noise is clipped into the action box
    spread = [np.abs(seqs[i] - rec).mean() for i in (1, 2)]
    assert 0 < spread[0] < spread[1]
    assert CounterfactualConfig().outcomes == (
        "recorded",
        "recorded+noise0.1",
        "recorded+noise0.3",
        "random",
    )


def test_dream_outcomes_share_noise_within_a_start() -> None:
    k, a_dim, horizons = 2, 1, (1, 3)

    def step(
        s: torch.Tensor, a: np.ndarray, gens: list[torch.Generator], prev: torch.Tensor
    ) -> torch.Tensor:
        assert prev.shape == s.shape
        noise = torch.stack([torch.randn(s.shape[1:], generator=g) for g in gens])
        return s + torch.from_numpy(a).sum(1)[:, None, None] + noise

    start = np.zeros((2, N, D), np.float32)
    seqs = np.zeros((2, 3, max(horizons) * k, a_dim), np.float32)
    seqs[:, 1] = 1.0  # +2 per chunk
    out = dream_outcomes(step, start, seqs, k, horizons, np.array([7, 8]), batch_size=4)
    assert out.shape == (2, 3, 2, N, D)
    # Same start, same actions -> same noise -> identical; other actions differ by exactly 2/chunk.
    np.testing.assert_array_equal(out[:, 0], out[:, 2])
    np.testing.assert_allclose(out[:, 1, 0] - out[:, 0, 0], 2.0, atol=1e-5)
    np.testing.assert_allclose(out[:, 1, 1] - out[:, 0, 1], 6.0, atol=1e-5)
    assert not np.allclose(out[0, 0], out[1, 0])  # another start has its own noise


def test_dream_outcomes_pass_the_previous_chunk_to_history_models() -> None:
    k, horizons = 2, (1, 2, 3)

    def step(s: torch.Tensor, a: np.ndarray, gens: list[torch.Generator], prev: torch.Tensor):
        return s + (s - prev)  # constant velocity: the motion of the last chunk, again

    start = np.ones((1, N, D), np.float32)
    seqs = np.zeros((1, 2, max(horizons) * k, 1), np.float32)
    out = dream_outcomes(step, start, seqs, k, horizons, np.array([0]), previous=start - 0.5)
    np.testing.assert_allclose(out[0, 0, :, 0, 0], [1.5, 2.0, 2.5])
    # Without an earlier frame the start stands in: at rest, nothing moves.
    still = dream_outcomes(step, start, seqs, k, horizons, np.array([0]))
    np.testing.assert_allclose(still, 1.0)


@pytest.mark.sim
def test_tiny_real_run_on_the_reacher_bundle(tmp_path) -> None:
    pytest.importorskip("dm_control")
    pytest.importorskip("onnxruntime")
    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.evaluation.counterfactual import RealOutcomes, measure_real, score_models

    torch.set_num_threads(1)
    cfg = CounterfactualConfig(states=2, episodes=2, horizons=(1,))
    bundle = resolve_artifacts(None, "dmc-reacher")
    real = measure_real(bundle, cfg, log=lambda _: None)
    real.save(tmp_path / "real.npz")
    again = RealOutcomes.load(tmp_path / "real.npz")
    assert again.starts == real.starts and np.array_equal(again.real, real.real)
    # The frame one chunk before each start is recorded; at t = 0 it is the start's own.
    assert again.previous is not None and again.previous.shape == real.start.shape
    for i, st in enumerate(real.starts):
        same = np.allclose(real.previous[i], real.start[i], atol=1e-5)
        assert same == (st["t"] == 0)
    # The robot's body rides along: reacher's 6-D body vector at the start, one chunk before
    # and after every sequence; the sequences move it differently, and it survives the file.
    assert again.body is not None and set(again.body) == {"start", "previous", "real"}
    assert again.body["start"].shape == (2, 6) and again.body["real"].shape == (2, 4, 1, 6)
    assert np.abs(np.diff(again.body["real"][:, :, 0], axis=1)).max() > 1e-3
    np.testing.assert_allclose(again.body["start"], real.body["start"])  # type: ignore[index]
    # The bundle's own model, and the same checkpoint passed as an override, score the same.
    scored = score_models(
        again,
        cfg,
        {"rla-wm": {}, "same": {"world_model": str(bundle / "world_model")}},
        log=lambda _: None,
    )
    assert scored["same"]["1"] == scored["rla-wm"]["1"]
    from rla_gym.evaluation.counterfactual import evaluate_suite

    out = evaluate_suite(bundle, cfg, log=lambda _: None)
    m = out["rla-wm"]["1"]
    assert m["states"] == 2 and m["pairs"] == 12
    assert -1 <= m["direction"] <= 1 and m["magnitude_ratio"] > 0
    assert m["copy_last_l1"] > 0 and m["l1"] > 0
    ceiling = out["rla-wm"]["rla_ceiling"]
    assert ceiling["horizon"] == "1" and -1 <= ceiling["direction"] <= 1
    assert [s["t"] % 8 for s in out["run"]["starts"]] == [0, 0]


def test_direction_by_pair_of_sequences(case) -> None:
    """The breakdown tells which pairs of sequences a dream tells apart."""
    start, real, _ = case
    names = [f"seq{k}" for k in range(M)]
    # Deaf to every sequence but the last: the last differs from the first as in reality.
    dream = np.repeat(real[:, :1], M, axis=1)
    dream[:, -1] = real[:, -1]
    m = outcome_metrics(start, real, dream, names=names)
    by_pair = m["direction_by_pair"]
    assert len(by_pair) == M * (M - 1) // 2
    assert by_pair[f"seq0~seq{M - 1}"] == pytest.approx(1.0)
    assert by_pair["seq0~seq1"] == 0.0  # the dream does not tell them apart
    assert 0 < by_pair[f"seq1~seq{M - 1}"] < 1
    want = np.linalg.norm((real[:, 0] - real[:, 1]).reshape(len(real), -1), axis=1).mean()
    assert m["real_distance_by_pair"]["seq0~seq1"] == pytest.approx(want, rel=1e-5)
    assert "direction_by_pair" not in outcome_metrics(start, real, dream)
    with pytest.raises(ValueError, match="names"):
        outcome_metrics(start, real, dream, names=names[:2])
