"""World model, baselines, training entry point and fidelity evaluation (tiny, CPU, < 90 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.data.windows import PairSampler
from rla_gym.errors import EncoderMismatchError
from rla_gym.evaluation import evaluate_fidelity
from rla_gym.rla import RLAAutoencoder, RLAConfig
from rla_gym.utils.checkpoint import read_config
from rla_gym.world_model import (
    BaselineConfig,
    CopyLastFrame,
    DirectRegressionWM,
    FeatureFlowWM,
    Predictor,
    RLAWorldModel,
    load_predictor,
    world_model_preset,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N, D, A, H_MAX = 4, 8, 2, 6
FP = "synthetic@000000000000"


Episodes = list[tuple[np.ndarray, np.ndarray]]


def render_points(p: np.ndarray) -> np.ndarray:
    """Positions ``(T+1, 2)`` -> features ``float32 (T+1, N, D)``: token ``i`` is
    ``tanh(W_i p + b_i)`` for fixed random ``W_i, b_i`` (the same for every data set)."""
    w = np.random.default_rng(123).normal(size=(N, D, 2)).astype(np.float32)
    b = np.random.default_rng(124).normal(size=(N, D)).astype(np.float32)
    return np.tanh(np.einsum("ndk,tk->tnd", w, p.astype(np.float32)) + b[None]).astype(np.float32)


def synthetic_episodes(num: int = 6, length: int = 40, seed: int = 0) -> Episodes:
    """Features driven by actions: a 2-D point moves by ``0.1 * a_t`` and is rendered per token.

    Token ``i`` is ``tanh(W_i p + b_i)`` for fixed random ``W_i, b_i``, so ``s_{t+h}`` is a
    smooth function of ``s_t`` and the actions in between (learnable, not trivially copyable).
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        acts = rng.uniform(-1, 1, size=(length, A)).astype(np.float32)
        start = rng.uniform(-1, 1, (1, 2))
        feats = render_points(np.concatenate([start, start + 0.1 * np.cumsum(acts, 0)]))
        out.append((feats, acts))
    return out


@pytest.fixture(scope="module")
def episodes() -> Episodes:
    return synthetic_episodes()


@pytest.fixture(scope="module")
def rla(episodes: Episodes) -> RLAAutoencoder:
    """A tiny RLA trained briefly so its decoder actually depends on ``z``."""
    torch.manual_seed(0)
    model = RLAAutoencoder(
        RLAConfig(
            feature_dim=D,
            num_tokens=N,
            latent_tokens=2,
            latent_dim=4,
            width=32,
            depth=1,
            heads=2,
            encoder_fingerprint=FP,
        )
    )
    sampler = PairSampler(episodes, 1, H_MAX, 0.5, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        b = sampler.sample(32)
        loss, _ = model.loss(b["s_t"], b["s_th"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def make_wm(rla: RLAAutoencoder, seed: int = 0) -> RLAWorldModel:
    torch.manual_seed(seed)
    return RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX), rla).eval()


def make_baseline(cls: type, seed: int = 0) -> DirectRegressionWM | FeatureFlowWM:
    torch.manual_seed(seed)
    cfg = BaselineConfig(
        feature_dim=D,
        num_tokens=N,
        action_dim=A,
        max_horizon=H_MAX,
        width=32,
        heads=2,
        depth=1,
        flow_depth=1,
        encoder_fingerprint=FP,
    )
    return cls(cfg).eval()


def batch(b: int = 3, h: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, N, D, generator=g), torch.rand(b, h, A, generator=g) * 2 - 1


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


# ---------------------------------------------------------------------------------- training
def test_train_world_model_smoke(rla: RLAAutoencoder, episodes: Episodes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rla_gym.data.feature_episodes import FeatureDataConfig, FeatureSplit
    from rla_gym.utils.training import TrainerConfig
    from rla_gym.world_model import TrainWorldModelConfig, train_world_model

    rla.save_pretrained(tmp_path / "rla")
    for kind in ("rla-wm", "direct"):
        # The rla-wm run replaces the preset's latent normalisation (a linear-path RLA's recipe).
        norm = (
            {"latent_norm": "scalar", "latent_scale": 2.0, "history": 2} if kind == "rla-wm" else {}
        )
        cfg = TrainWorldModelConfig(
            model=kind,
            rla=str(tmp_path / "rla"),
            out=str(tmp_path / kind),
            preset="tiny",
            max_gap=H_MAX,
            norm_pairs=16,
            **norm,  # type: ignore[arg-type]
            data=FeatureDataConfig(val_pairs=4),
            trainer=TrainerConfig(
                steps=3,
                batch_size=4,
                val_every=2,
                ckpt_every=2,
                device="cpu",
                progress=False,
                tensorboard=False,
            ),
        )
        split = FeatureSplit(train=episodes[:4], val=episodes[4:], fingerprint=FP)
        res = train_world_model(cfg, split)
        assert res.step == 3 and "val/pred_l1" in res.val_metrics
        model = load_predictor(res.checkpoint, expected_fingerprint=FP)
        assert model.meta["wall_clock_s"] > 0 and read_config(res.checkpoint)["type"] == kind
        s, a = batch()
        assert model.predict(s, a, generator=gen()).shape == (3, N, D)
        if norm:
            c = read_config(res.checkpoint)["world_model"]
            assert (c["latent_norm"], c["latent_scale"], c["history"]) == ("scalar", 2.0, 2)
            assert c["width"] == 64  # the rest is still the preset's
            assert float(model.motion_scale) != 1.0  # measured on the training pairs
    split = FeatureSplit(train=episodes[:4], val=episodes[4:], fingerprint=FP)
    for bad in (
        {"model": "direct", "latent_norm": "scalar"},
        {"model": "direct", "history": 2},
        {"model": "rla-wm", "latent_scale": 2.0, "world_model": world_model_preset("tiny", A)},
    ):
        with pytest.raises(ValueError, match="latent_"):
            train_world_model(
                TrainWorldModelConfig(rla=str(tmp_path / "rla"), out=str(tmp_path / "bad"), **bad),
                split,
            )
    assert not (tmp_path / "bad" / "checkpoint").exists()


def test_fidelity_benchmark_cli_smoke(rla: RLAAutoencoder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """benchmarks/fidelity.py end to end on a tiny EpisodeStore: JSON keys and a PNG."""
    import json

    from bench_script import load_benchmark

    from rla_gym.data.episodes import Episode, EpisodeStore
    from rla_gym.data.feature_episodes import FeatureDataConfig
    from rla_gym.utils.training import TrainerConfig
    from rla_gym.world_model import TrainWorldModelConfig, train_world_model

    pytest.importorskip("matplotlib")
    root = tmp_path / "data"
    store = EpisodeStore(root)
    store.init_manifest({"sim": "synthetic", "task": "point", "resolution": 8, "action_dim": A})
    store.begin_features("tiny", FP)
    for i, (f, a) in enumerate(synthetic_episodes(num=6, length=36, seed=7)):
        t = len(a)
        ep = Episode(
            frames=np.zeros((t + 1, 8, 8, 3), np.uint8),
            actions=a,
            proprio=np.zeros((t + 1, 1), np.float32),
            rewards=np.zeros(t, np.float32),
            success=np.zeros(t + 1, bool),
            meta={"policy": "expert"},
        )
        eid = store.episode_id("expert", i)
        store.write(eid, ep)
        store.write_features(eid, "tiny", f, FP, (2, 2))
    rla.save_pretrained(tmp_path / "rla")
    ckpts = {}
    for kind in ("rla-wm", "direct"):
        cfg = TrainWorldModelConfig(
            model=kind,
            rla=str(tmp_path / "rla"),
            out=str(tmp_path / kind),
            preset="tiny",
            max_gap=H_MAX,
            norm_pairs=8,
            data=FeatureDataConfig(folder=str(root), encoder="tiny", val_pairs=4, val_fraction=0.3),
            trainer=TrainerConfig(
                steps=2, batch_size=4, device="cpu", progress=False, tensorboard=False
            ),
        )
        ckpts[kind] = str(train_world_model(cfg).checkpoint)
    bench = load_benchmark("fidelity")
    out, png = tmp_path / "fid.json", tmp_path / "fid.png"
    bench.main(
        [
            "--data",
            str(root),
            "--encoder",
            "tiny",
            "--rla",
            str(tmp_path / "rla"),
            "--wm",
            ckpts["rla-wm"],
            "--direct",
            ckpts["direct"],
            "--val-fraction",
            "0.3",
            "--chunk",
            "6",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--plot",
            str(png),
        ]
    )
    res = json.loads(out.read_text())
    assert set(res["models"]) == {"copy-last", "rla-wm", "direct"}
    assert res["models"]["rla-wm"]["train_wall_clock_s"] > 0
    assert res["rla_reconstruction"]["l1"] is not None and "git_sha" in res["provenance"]
    assert png.stat().st_size > 0


@pytest.mark.parametrize("kind", ["rla-wm", "fm"])
def test_per_row_generators_make_rows_independent_of_the_batch(
    rla: RLAAutoencoder, kind: str
) -> None:
    """With one generator per row, row i's samples do not depend on the other rows."""
    model = make_wm(rla) if kind == "rla-wm" else make_baseline(FeatureFlowWM)
    model.eval()
    s, a = batch()
    gens = [torch.Generator().manual_seed(10 + i) for i in range(len(s))]
    both = model.sample(s, a, num_samples=2, steps=2, generator=gens)
    assert both.shape == (len(s), 2, N, D)
    alone = model.sample(
        s[1:2], a[1:2], num_samples=2, steps=2, generator=[torch.Generator().manual_seed(11)]
    )
    torch.testing.assert_close(both[1], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both[1, 0], both[1, 1])  # two draws of one row differ
    with pytest.raises(ValueError, match="generators for"):
        model.sample(s, a, generator=gens[:1])
    assert isinstance(model, Predictor)
    copy = CopyLastFrame().sample(s, a, num_samples=3)
    assert copy.shape == (len(s), 3, N, D) and torch.equal(copy[:, 2], s)


def test_action_dropout_and_guidance(rla: RLAAutoencoder, tmp_path: Path) -> None:
    """Guidance 1 is plain sampling, 0 ignores the action, > 1 moves further from action-free."""
    torch.manual_seed(0)
    wm = RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX, action_dropout=0.3), rla)
    with torch.no_grad():  # as if trained: zero-initialised gates would hide the action
        for p in wm.trainable_parameters():
            p.add_(0.2 * torch.randn_like(p))
    wm.eval()
    s, a = batch()
    plain = wm.sample(s, a, steps=3, generator=gen(1))
    torch.testing.assert_close(wm.sample(s, a, steps=3, generator=gen(1), guidance=1.0), plain)
    free_a = wm.sample(s, a, steps=3, generator=gen(1), guidance=0.0)
    free_b = wm.sample(s, -a, steps=3, generator=gen(1), guidance=0.0)
    torch.testing.assert_close(free_a, free_b)  # weight 0: the action no longer matters
    strong = wm.sample(s, a, steps=3, generator=gen(1), guidance=3.0)
    assert (strong - free_a).abs().mean() > (plain - free_a).abs().mean()
    # The training loss draws the dropout mask from the generator: still deterministic.
    s_th = s + 0.1
    acts = torch.nn.functional.pad(a, (0, 0, 0, H_MAX - a.shape[1]))
    lens = torch.full((len(s),), a.shape[1])
    l1 = wm.loss(s, s_th, acts, lens, gen(2))["loss"]
    torch.testing.assert_close(wm.loss(s, s_th, acts, lens, gen(2))["loss"], l1)
    # The option survives a save/load round trip; bad weights and dropout-free models refuse.
    wm.save_pretrained(tmp_path / "wm")
    again = RLAWorldModel.from_pretrained(tmp_path / "wm")
    torch.testing.assert_close(again.sample(s, a, steps=3, generator=gen(1), guidance=3.0), strong)
    with pytest.raises(ValueError, match=">= 0"):
        wm.sample(s, a, guidance=-1.0)
    with pytest.raises(ValueError, match="action dropout"):
        make_wm(rla).sample(s, a, guidance=2.0)
    with pytest.raises(ValueError, match="action-free"):
        make_baseline(DirectRegressionWM).sample(s, a, guidance=2.0)
    with pytest.raises(ValueError, match="action_dropout"):
        world_model_preset("tiny", A, action_dropout=1.0)


# ---------------------------------------------------------------------------------- history
def momentum_episodes(num: int, length: int = 40, seed: int = 0) -> Episodes:
    """A point with momentum: ``v_{t+1} = 0.9 v_t + 0.02 a_t``, ``p_{t+1} = p_t + v_{t+1}``.

    One frame shows where the point is but not where it is going; the frame a few steps earlier
    shows that. Rendered per token like :func:`synthetic_episodes`.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        acts = rng.uniform(-1, 1, size=(length, A)).astype(np.float32)
        p, v = rng.uniform(-0.5, 0.5, 2), rng.normal(0, 0.04, 2)
        ps = [p]
        for a in acts:
            v = 0.9 * v + 0.02 * a
            p = p + v
            ps.append(p)
        feats = render_points(np.stack(ps))
        out.append((feats, acts))
    return out


def test_pair_sampler_history_adds_the_earlier_frame_without_changing_draws(
    episodes: Episodes,
) -> None:
    plain = PairSampler(episodes, 1, H_MAX, 0.5, seed=3).sample(64)
    hist = PairSampler(episodes, 1, H_MAX, 0.5, seed=3, history=4).sample(64)
    assert "s_prev" not in plain
    for k in ("s_t", "s_th", "actions", "lengths", "start", "episode"):
        torch.testing.assert_close(hist[k], plain[k])
    for i in range(64):
        e, t = int(hist["episode"][i]), int(hist["start"][i])
        want = torch.from_numpy(episodes[e][0][max(t - 4, 0)])
        torch.testing.assert_close(hist["s_prev"][i], want)
    with pytest.raises(ValueError, match="history"):
        PairSampler(episodes, 1, H_MAX, history=-1)


def test_history_model_api(rla: RLAAutoencoder, tmp_path: Path) -> None:
    torch.manual_seed(0)
    wm = RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX, history=3), rla)
    s, a = batch()
    prev = s - 0.5
    # Zero-initialised: a fresh history model is the Markov model, whatever the earlier frame.
    torch.testing.assert_close(
        wm.sample(s, a, steps=3, generator=gen(1), s_prev=prev),
        wm.sample(s, a, steps=3, generator=gen(1)),
    )
    with torch.no_grad():  # as if trained: zero-initialised gates would hide the motion
        for p in wm.trainable_parameters():
            p.add_(0.2 * torch.randn_like(p))
    moving = wm.sample(s, a, steps=3, generator=gen(1), s_prev=prev)
    at_rest = wm.sample(s, a, steps=3, generator=gen(1))
    assert (moving - at_rest).abs().mean() > 1e-3
    torch.testing.assert_close(wm.sample(s, a, steps=3, generator=gen(1), s_prev=s), at_rest)
    # A rollout hands each chunk the previous chunk's start.
    roll = wm.rollout(s, [a, a], steps=3, generator=gen(2), s_prev=prev)
    g = gen(2)
    first = wm.predict(s, a, steps=3, generator=g, s_prev=prev)
    torch.testing.assert_close(roll[:, 1], wm.predict(first, a, steps=3, generator=g, s_prev=s))
    wm.save_pretrained(tmp_path / "wm")
    again = RLAWorldModel.from_pretrained(tmp_path / "wm")
    assert again.history == 3
    torch.testing.assert_close(again.sample(s, a, steps=3, generator=gen(1), s_prev=prev), moving)
    with pytest.raises(ValueError, match="s_prev"):
        wm.sample(s, a, s_prev=s[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        wm.sample(s, a, s_prev=torch.full_like(s, float("nan")))
    with pytest.raises(ValueError, match="history"):
        world_model_preset("tiny", A, history=-1)
    # Markov models ignore the earlier frame.
    markov = make_wm(rla)
    torch.testing.assert_close(
        markov.sample(s, a, steps=3, generator=gen(1), s_prev=prev),
        markov.sample(s, a, steps=3, generator=gen(1)),
    )


def test_history_helps_where_one_frame_hides_the_velocity(rla: RLAAutoencoder) -> None:
    """Same budget, same data: the model that sees the earlier frame predicts momentum better."""
    train, val = momentum_episodes(12), momentum_episodes(4, seed=9)
    h = 4
    errors = {}
    for history in (0, h):
        torch.manual_seed(0)
        wm = RLAWorldModel(world_model_preset("tiny", A, max_horizon=H_MAX, history=history), rla)
        sampler = PairSampler(train, h, h, 0.0, seed=0, history=h)
        wm.fit_normalization(PairSampler(train, h, h, 0.0, seed=5, history=h).iter_eval(256, 64))
        opt = torch.optim.AdamW(wm.trainable_parameters(), lr=3e-3)
        g = gen(0)
        wm.train()
        for _ in range(300):
            b = sampler.sample(32)
            loss = wm(b["s_t"], b["s_th"], b["actions"], b["lengths"], g, b["s_prev"])["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        wm.eval()
        # Starts at least h steps in, so every earlier frame is a real one.
        pairs = next(iter(PairSampler(val, h, h, 0.0, history=h).iter_eval(256, 256, seed=1)))
        keep = pairs["start"] >= h
        pred = wm.predict(
            pairs["s_t"][keep],
            pairs["actions"][keep],
            pairs["lengths"][keep],
            steps=5,
            generator=gen(3),
            s_prev=pairs["s_prev"][keep],
        )
        errors[history] = float((pred - pairs["s_th"][keep]).abs().mean())
    assert errors[h] < 0.9 * errors[0], errors  # measured 0.75x


def test_action_in_flow_reaches_every_flow_block(rla: RLAAutoencoder, tmp_path: Path) -> None:
    """``action_in_flow``: the action vector also modulates the flow blocks; guidance, samples
    and save/load work as without it, and models without it keep their checkpoint format."""
    torch.manual_seed(0)
    cfg = world_model_preset("tiny", A, max_horizon=H_MAX, action_in_flow=True, action_dropout=0.3)
    wm = RLAWorldModel(cfg, rla)
    assert "flow.vector_proj.weight" in wm.state_dict()
    assert not any("vector_proj" in k for k in make_wm(rla).state_dict())
    with torch.no_grad():  # as if trained
        for p in wm.trainable_parameters():
            p.add_(0.2 * torch.randn_like(p))
    wm.eval()
    s, a = batch()
    out = wm.sample(s, a, steps=3, generator=gen(1), num_samples=2)
    assert out.shape == (3, 2, N, D)
    assert (out - wm.sample(s, -a, steps=3, generator=gen(1), num_samples=2)).abs().mean() > 1e-4
    guided = wm.sample(s, a, steps=3, generator=gen(1), guidance=2.0)
    wm.save_pretrained(tmp_path / "wm")
    again = RLAWorldModel.from_pretrained(tmp_path / "wm")
    assert again.config.action_in_flow
    torch.testing.assert_close(again.sample(s, a, steps=3, generator=gen(1), guidance=2.0), guided)
    with pytest.raises(ValueError, match="condition vector"):
        wm.flow.prepare(torch.zeros(1, N, cfg.width))


def branch_data(trunks: int = 4, seed: int = 0) -> tuple[Episodes, list[np.ndarray]]:
    """Synthetic branch data: point trunks, and from every 4th trunk step two more ``H_MAX``-step
    chunks from the same position. Returns ``(episodes, sibling groups)``."""
    rng = np.random.default_rng(seed)
    eps: Episodes = synthetic_episodes(trunks, length=16, seed=seed)
    groups = []
    for e in range(trunks):
        acts = eps[e][1]
        pos = rng.uniform(-1, 1, (1, 2))  # re-rendered: the trunk's own positions
        p = np.concatenate([pos, pos + 0.1 * np.cumsum(acts, 0)])
        eps[e] = (render_points(p), acts)
        for t in range(0, 16 - H_MAX + 1, 4):
            rows = [(e, t, H_MAX)]
            for _ in range(2):
                a = rng.uniform(-1, 1, (H_MAX, A)).astype(np.float32)
                rows.append((len(eps), 0, H_MAX))
                eps.append(
                    (render_points(np.concatenate([p[t : t + 1], p[t] + 0.1 * a.cumsum(0)])), a)
                )
            groups.append(np.array(rows))
    return eps, groups


def test_pair_sampler_draws_sibling_pairs() -> None:
    eps, groups = branch_data()
    plain = PairSampler(eps, 1, H_MAX, 0.5, seed=3).sample(32)
    # No share: the same draws as without groups.
    same = PairSampler(eps, 1, H_MAX, 0.5, seed=3, siblings=groups).sample(32)
    assert "sibling_pairs" not in same
    for k in ("s_t", "s_th", "actions", "lengths"):
        torch.testing.assert_close(same[k], plain[k])
    b = PairSampler(eps, 1, H_MAX, 0.5, seed=3, siblings=groups, sibling_fraction=0.5).sample(32)
    assert b["sibling_pairs"] == 8 and b["s_t"].shape == (32, N, D)
    for i in range(8):
        one, two = 2 * i, 2 * i + 1
        # One real start, one gap, different actions (and so different outcomes).
        torch.testing.assert_close(b["s_t"][one], b["s_t"][two])
        assert int(b["lengths"][one]) == int(b["lengths"][two]) == H_MAX
        assert (b["actions"][one] - b["actions"][two]).abs().sum() > 0
        assert (b["episode"][one], b["start"][one]) != (b["episode"][two], b["start"][two])
    with pytest.raises(ValueError, match="sibling_fraction"):
        PairSampler(eps, 1, H_MAX, siblings=groups, sibling_fraction=1.5)
    with pytest.raises(ValueError, match="branch"):
        PairSampler(eps, 1, H_MAX, sibling_fraction=0.5)


def test_sibling_loss_trains_the_outcome_difference(rla: RLAAutoencoder) -> None:
    eps, groups = branch_data()
    wm = make_wm(rla).train()
    sampler = PairSampler(eps, 1, H_MAX, 0.5, seed=0, siblings=groups, sibling_fraction=0.5)
    wm.fit_normalization(PairSampler(eps, 1, H_MAX, 0.5, seed=1).iter_eval(64, 64))
    b = sampler.sample(16)
    args = (b["s_t"], b["s_th"], b["actions"], b["lengths"])
    # Two copies of one pair are siblings that share noise and time: nothing differs.
    twins = [torch.cat([x[:1], x[:1]]) for x in args]
    assert float(wm.loss(*twins, gen(0), sibling_pairs=1, sibling_weight=1.0)["sibling_l1"]) == 0
    plain = wm.loss(*args, gen(0), sibling_pairs=b["sibling_pairs"])
    weighted = wm.loss(*args, gen(0), sibling_pairs=b["sibling_pairs"], sibling_weight=2.0)
    assert float(plain["sibling_l1"]) > 0
    assert float(weighted["loss"].detach()) > float(plain["loss"].detach())
    with pytest.raises(ValueError, match="sibling pairs"):
        wm.loss(*args, gen(0), sibling_pairs=9)


def test_train_world_model_refuses_siblings_it_cannot_use(
    rla: RLAAutoencoder, episodes: Episodes, tmp_path: Path
) -> None:
    from rla_gym.data.feature_episodes import FeatureSplit
    from rla_gym.world_model import TrainWorldModelConfig, train_world_model

    rla.save_pretrained(tmp_path / "rla")
    split = FeatureSplit(train=episodes[:4], val=episodes[4:], fingerprint=FP)
    for bad, match in (
        ({"model": "direct"}, "rla-wm"),
        ({"model": "rla-wm", "sibling_weight": -1.0}, "sibling_weight"),
        ({"model": "rla-wm"}, "ids"),  # in-memory episodes: no ids to find branch points by
    ):
        with pytest.raises(ValueError, match=match):
            train_world_model(
                TrainWorldModelConfig(
                    rla=str(tmp_path / "rla"),
                    out=str(tmp_path / "bad"),
                    preset="tiny",
                    max_gap=H_MAX,
                    sibling_fraction=0.5,
                    **bad,  # type: ignore[arg-type]
                ),
                split,
            )
    assert not (tmp_path / "bad" / "checkpoint").exists()
