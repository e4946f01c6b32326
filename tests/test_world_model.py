"""World model and baselines: shapes, determinism, bad input, learning, saving, and the fidelity
evaluation (tiny, CPU). Training entry points and model variants: ``test_world_model_training``."""

# ruff: noqa: F811 (the tiny RLA and its episodes are tiny_world's fixtures, used by name)

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_world import (  # noqa: F401 (episodes and rla are fixtures, used by name)
    FP,
    H_MAX,
    A,
    D,
    Episodes,
    N,
    batch,
    episodes,
    gen,
    make_baseline,
    make_wm,
    rla,
    synthetic_episodes,
)

from rla_gym.data.windows import PairSampler
from rla_gym.errors import EncoderMismatchError
from rla_gym.evaluation import evaluate_fidelity
from rla_gym.rla import RLAAutoencoder
from rla_gym.world_model import (
    CopyLastFrame,
    DirectRegressionWM,
    FeatureFlowWM,
    Predictor,
    RLAWorldModel,
    load_predictor,
    world_model_preset,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------- RLA-WM
def test_predict_and_rollout_shapes(rla: RLAAutoencoder) -> None:
    wm = make_wm(rla)
    s, a = batch()
    assert wm.predict(s, a, generator=gen()).shape == (3, N, D)
    assert wm.predict(s, a, steps=3, method="midpoint", generator=gen()).shape == (3, N, D)
    out = wm.rollout(s, [a, a[:, :2], a[:, :1]], generator=gen())
    assert out.shape == (3, 3, N, D)
    assert torch.isfinite(out).all()


def test_padded_chunks_equal_unpadded(rla: RLAAutoencoder) -> None:
    wm = make_wm(rla)
    s, a = batch(h=3)
    padded = torch.cat([a, torch.full((3, H_MAX - 3, A), 7.0)], dim=1)  # padding must be ignored
    ref = wm.predict(s, a, generator=gen(1))
    got = wm.predict(s, padded, torch.tensor([3, 3, 3]), generator=gen(1))
    torch.testing.assert_close(ref, got)
    # Mixed lengths in one batch: each row's action vector equals that of its unpadded chunk.
    lengths = torch.tensor([3, 1, 2])
    vec = wm.action_encoder(wm.normalize_actions(padded, lengths), lengths)
    for i, h in enumerate(lengths.tolist()):
        one = torch.tensor([h])
        ref_i = wm.action_encoder(wm.normalize_actions(a[i : i + 1, :h], one), one)
        torch.testing.assert_close(vec[i : i + 1], ref_i)


def test_determinism_with_seeded_generator(rla: RLAAutoencoder) -> None:
    wm = make_wm(rla)
    s, a = batch()
    p1 = wm.predict(s, a, generator=gen(5))
    p2 = wm.predict(s, a, generator=gen(5))
    p3 = wm.predict(s, a, generator=gen(6))
    torch.testing.assert_close(p1, p2)
    assert not torch.allclose(p1, p3)


def test_rollout_feeds_back_predictions(rla: RLAAutoencoder) -> None:
    wm = make_wm(rla)
    s, a = batch()
    c1, c2 = a[:, :3], a[:, 1:]
    out = wm.rollout(s, [c1, c2], steps=4, generator=gen(3))
    g = gen(3)
    s1 = wm.predict(s, c1, steps=4, generator=g)
    s2 = wm.predict(s1, c2, steps=4, generator=g)
    torch.testing.assert_close(out[:, 0], s1)
    torch.testing.assert_close(out[:, 1], s2)
    # Conditioning on the real s_t instead of ŝ would give something else.
    assert not torch.allclose(s2, wm.predict(s, c2, steps=4, generator=gen(99)))


def test_uncertainty(rla: RLAAutoencoder) -> None:
    wm = make_wm(rla)
    s, a = batch()
    mean, unc = wm.predict_with_uncertainty(s, a, num_samples=4, generator=gen())
    assert mean.shape == (3, N, D) and unc.shape == (3,)
    assert (unc >= 0).all() and (unc > 0).any()  # an untrained flow samples noise -> spread
    assert wm.predict(s, a, num_samples=3, generator=gen()).shape == (3, N, D)


@pytest.mark.parametrize(
    ("s_shape", "a_shape", "lengths", "match"),
    [
        ((3, N, D), (3, 4, A + 1), None, rf"\(B, h, {A}\)"),  # wrong action dim
        ((3, N, D), (3, H_MAX + 1, A), None, rf"1\.\.{H_MAX}"),  # chunk longer than H_max
        ((3, N, D + 1), (3, 4, A), None, rf"\(B, {N}, {D}\)"),  # wrong feature shape
        ((3, N + 1, D), (3, 4, A), None, rf"\(B, {N}, {D}\)"),
        ((3, N, D), (2, 4, A), None, r"batch"),  # batch mismatch
        ((3, N, D), (3, H_MAX, A), [1, 0, 2], r"lengths"),  # length 0
        ((3, N, D), (3, 4, A), [1, 5, 2], r"lengths"),  # length > padded length
    ],
)
def test_bad_inputs_raise(
    rla: RLAAutoencoder,
    s_shape: tuple[int, ...],
    a_shape: tuple[int, ...],
    lengths: list[int] | None,
    match: str,
) -> None:
    wm = make_wm(rla)
    lens = None if lengths is None else torch.tensor(lengths)
    with pytest.raises(ValueError, match=match):
        wm.predict(torch.zeros(s_shape), torch.zeros(a_shape), lens)


def test_nan_inputs_raise(rla: RLAAutoencoder) -> None:
    wm = make_wm(rla)
    s, a = batch()
    s[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        wm.predict(s, a)
    s, a = batch()
    a[1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        wm.rollout(s, [a])


def test_overfit_one_batch(rla: RLAAutoencoder, episodes: Episodes) -> None:
    torch.manual_seed(0)
    wm = RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX), rla)
    b = PairSampler(episodes, 1, H_MAX, 0.5, seed=1).sample(8)
    wm.fit_normalization([b])
    rla_before = {k: v.clone() for k, v in rla.state_dict().items()}
    opt = torch.optim.AdamW(wm.trainable_parameters(), lr=3e-3)
    g = gen(0)
    losses = []
    wm.train()
    for _ in range(300):
        loss = wm(b["s_t"], b["s_th"], b["actions"], b["lengths"], g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert not wm.rla.training
    for k, v in rla.state_dict().items():  # the RLA stays frozen
        torch.testing.assert_close(v, rla_before[k])
    first, last = np.mean(losses[:10]), np.mean(losses[-20:])
    assert last < 0.4 * first, (first, last)


def test_learns_dynamics_better_than_copy(rla: RLAAutoencoder, episodes: Episodes) -> None:
    """Brief training on the synthetic dynamics beats "nothing moves" on held-out episodes."""
    torch.manual_seed(0)
    wm = RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX), rla)
    sampler = PairSampler(episodes, 1, H_MAX, 0.5, seed=0)
    wm.fit_normalization(PairSampler(episodes, 1, H_MAX, 0.5, seed=5).iter_eval(256, 64))
    opt = torch.optim.AdamW(wm.trainable_parameters(), lr=3e-3)
    g = gen(0)
    wm.train()
    for _ in range(300):
        b = sampler.sample(32)
        loss = wm(b["s_t"], b["s_th"], b["actions"], b["lengths"], g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    wm.eval()
    val = synthetic_episodes(num=3, length=30, seed=9)
    ours = evaluate_fidelity(wm, val, chunk=H_MAX, horizons=(6, 12), seed=0, steps=5, rla=rla)
    copy = evaluate_fidelity(CopyLastFrame(), val, chunk=H_MAX, horizons=(6, 12), seed=0)
    for h in ("6", "12"):  # measured ~0.65x of copy; the margin leaves room for seeds/BLAS
        assert ours["l1"][h] < 0.85 * copy["l1"][h], (ours["l1"], copy["l1"])


def test_save_load_roundtrip(rla: RLAAutoencoder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    wm = make_wm(rla)
    wm.latent_std.mul_(2.0)  # non-default buffers must survive too
    wm.save_pretrained(tmp_path / "wm", meta={"note": "x"})
    loaded = RLAWorldModel.from_pretrained(tmp_path / "wm", expected_fingerprint=FP)
    s, a = batch()
    torch.testing.assert_close(
        wm.predict(s, a, generator=gen(4)), loaded.predict(s, a, generator=gen(4))
    )
    assert loaded.meta["note"] == "x" and loaded.encoder_fingerprint == FP
    assert isinstance(load_predictor(tmp_path / "wm"), RLAWorldModel)
    with pytest.raises(EncoderMismatchError):
        RLAWorldModel.from_pretrained(tmp_path / "wm", expected_fingerprint="other@123")


# ---------------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("cls", [DirectRegressionWM, FeatureFlowWM])
def test_baselines_share_api(cls: type, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = make_baseline(cls)
    assert isinstance(model, Predictor)
    s, a = batch()
    assert model.predict(s, a, generator=gen()).shape == (3, N, D)
    assert model.rollout(s, [a, a[:, :1]], steps=2, generator=gen()).shape == (3, 2, N, D)
    mean, unc = model.predict_with_uncertainty(s, a, num_samples=2, steps=2, generator=gen())
    assert mean.shape == (3, N, D) and unc.shape == (3,) and (unc >= 0).all()
    with pytest.raises(ValueError, match=rf"\(B, h, {A}\)"):
        model.predict(s, torch.zeros(3, 2, A + 1))
    model.save_pretrained(tmp_path / "m")
    loaded = load_predictor(tmp_path / "m", expected_fingerprint=FP)
    assert type(loaded) is cls
    torch.testing.assert_close(
        model.predict(s, a, steps=2, generator=gen(1)),
        loaded.predict(s, a, steps=2, generator=gen(1)),
    )


def test_direct_regression_starts_as_copy_and_learns(episodes: Episodes) -> None:
    model = make_baseline(DirectRegressionWM)
    s, a = batch()
    torch.testing.assert_close(model.predict(s, a), s)  # zero-init head == CopyLastFrame
    b = PairSampler(episodes, 1, H_MAX, 0.5, seed=2).sample(16)
    model.fit_normalization([b])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(80):
        loss = model(b["s_t"], b["s_th"], b["actions"], b["lengths"], gen())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_copy_last_frame() -> None:
    copy = CopyLastFrame()
    assert isinstance(copy, Predictor)
    s, a = batch()
    torch.testing.assert_close(copy.predict(s, a), s)
    out = copy.rollout(s, [a, a])
    assert out.shape == (3, 2, N, D)
    torch.testing.assert_close(out[:, 1], s)


# ---------------------------------------------------------------------------------- fidelity
def test_fidelity_keys_copy_static_and_determinism(rla: RLAAutoencoder) -> None:
    static = [
        (
            np.repeat(np.random.default_rng(0).normal(size=(1, N, D)), 41, 0).astype(np.float32),
            np.zeros((40, A), np.float32),
        )
    ]
    res = evaluate_fidelity(CopyLastFrame(), static, chunk=H_MAX, horizons=(8, 16, 32), seed=0)
    for key in (
        "chunk",
        "horizons",
        "seed",
        "l1",
        "cosine",
        "count",
        "rla_recon_l1",
        "rla_recon_cosine",
    ):
        assert key in res
    assert res["l1"]["32"] == 0.0 and res["cosine"]["8"] == pytest.approx(1.0)
    assert res["count"]["32"] >= 1 and res["rla_recon_l1"] is None

    eps = synthetic_episodes(num=2, length=20, seed=3)  # 32 does not fit: reported as None
    wm = make_wm(rla)
    r1 = evaluate_fidelity(wm, eps, chunk=5, horizons=(8, 16, 32), seed=1, steps=2, rla=rla)
    r2 = evaluate_fidelity(wm, eps, chunk=5, horizons=(8, 16, 32), seed=1, steps=2, rla=rla)
    assert r1 == r2
    assert r1["l1"]["32"] is None and r1["count"]["32"] == 0 and r1["l1"]["8"] > 0
    assert r1["rla_recon_l1"] is not None and r1["rla_recon_l1"] >= 0
