"""RLA autoencoder, pair sampler, checkpoints and the shared trainer (tiny CPU configs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.data.feature_episodes import FeatureDataConfig, FeatureSplit
from rla_gym.data.windows import PairSampler, interaction_frames
from rla_gym.errors import CorruptFileError, EncoderMismatchError, MissingWeightsError
from rla_gym.rla import RLAAutoencoder, RLAConfig
from rla_gym.rla.train import TrainRLAConfig, _rla_loss, train_rla
from rla_gym.utils.checkpoint import load_checkpoint, save_checkpoint
from rla_gym.utils.training import TrainerConfig, fit

N, D, A = 6, 8, 2


def tiny_config(**kw: object) -> RLAConfig:
    base: dict[str, object] = dict(
        feature_dim=D,
        num_tokens=N,
        latent_tokens=2,
        latent_dim=4,
        width=32,
        depth=1,
        heads=2,
        mlp_ratio=2.0,
        min_gap=1,
        max_gap=4,
        encoder_fingerprint="tiny@abc",
    )
    base.update(kw)
    return RLAConfig(**base)  # type: ignore[arg-type]


def synthetic_episodes(
    n: int = 4, length: int = 20, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A blob moving over a 1-D token row, pushed by the actions; idle in the second half."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N, D)).astype(np.float32)
    blob = rng.normal(size=D).astype(np.float32)
    eps = []
    for _ in range(n):
        acts = rng.uniform(-1, 1, size=(length, A)).astype(np.float32)
        acts[length // 2 :] = 0.0
        pos = np.concatenate([[rng.uniform(0, N - 1)], np.clip(acts[:, 0], -1, 1)]).cumsum()
        pos = np.clip(pos, 0, N - 1)
        w = np.exp(-((np.arange(N)[None, :] - pos[:, None]) ** 2))
        feats = base[None] + w[..., None] * blob[None, None]
        eps.append((feats.astype(np.float32), acts))
    return eps


# ---------------------------------------------------------------------------- sampler
def test_pair_sampler_shapes_and_determinism() -> None:
    eps = synthetic_episodes()
    s = PairSampler(eps, min_gap=1, max_gap=4, seed=3)
    b = s.sample(16)
    assert b["s_t"].shape == (16, N, D) and b["s_t"].dtype == torch.float32
    assert b["s_th"].shape == (16, N, D)
    assert b["actions"].shape == (16, 4, A)
    assert bool(((b["lengths"] >= 1) & (b["lengths"] <= 4)).all())
    for i in range(16):
        e, t, h = int(b["episode"][i]), int(b["start"][i]), int(b["lengths"][i])
        np.testing.assert_array_equal(b["s_th"][i].numpy(), eps[e][0][t + h])
        np.testing.assert_array_equal(b["actions"][i, :h].numpy(), eps[e][1][t : t + h])
        assert float(b["actions"][i, h:].abs().sum()) == 0.0
        assert b["action_mask"][i].sum() == h
    b2 = PairSampler(eps, min_gap=1, max_gap=4, seed=3).sample(16)
    assert all(torch.equal(b[k], b2[k]) for k in b)
    state = s.state_dict()
    nxt = s.sample(8)
    s.load_state_dict(state)
    assert torch.equal(s.sample(8)["s_t"], nxt["s_t"])
    e1 = [x["start"] for x in s.iter_eval(num_pairs=20, batch_size=8)]
    e2 = [x["start"] for x in s.iter_eval(num_pairs=20, batch_size=8)]
    assert len(e1) == 3 and all(torch.equal(a, c) for a, c in zip(e1, e2, strict=True))


def test_interaction_bias_prefers_moving_frames() -> None:
    eps = synthetic_episodes(n=2, length=40)
    inter = interaction_frames(eps[0][0], window=4)
    assert inter.max() < 25  # the idle second half is not "interaction"
    biased = PairSampler(eps, 1, 4, interaction_bias=1.0, seed=0).sample(200)["start"]
    uniform = PairSampler(eps, 1, 4, interaction_bias=0.0, seed=0).sample(200)["start"]
    assert float(biased.float().mean()) < float(uniform.float().mean())


# ---------------------------------------------------------------------------- model
def test_shapes_and_zero_init_head() -> None:
    torch.manual_seed(0)
    s_t, s_th = torch.randn(3, N, D), torch.randn(3, N, D)
    m = RLAAutoencoder(tiny_config())
    s_hat, z = m(s_t, s_th)
    assert z.shape == (3, 2, 4) and s_hat.shape == (3, N, D)
    assert float(s_hat.detach().abs().max()) == 0.0
    assert m.encode(s_t, s_th).shape == (3, 2, 4)
    r = RLAAutoencoder(tiny_config(decoder_target="residual"))
    torch.testing.assert_close(r.decode(s_t, torch.randn(3, 2, 4)), s_t)


def test_input_validation() -> None:
    m = RLAAutoencoder(tiny_config())
    good = torch.zeros(2, N, D)
    with pytest.raises(ValueError, match=rf"\(B, {N}, {D}\)"):
        m.encode(torch.zeros(2, N + 1, D), good)
    with pytest.raises(ValueError, match=rf"\(B, {N}, {D}\)"):
        m.decode(torch.zeros(2, N, D + 1), torch.zeros(2, 2, 4))
    bad = good.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m(good, bad)
    with pytest.raises(ValueError, match="z must have shape"):
        m.decode(good, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(width=30, heads=4)


def test_overfit_one_batch() -> None:
    torch.manual_seed(0)
    batch = PairSampler(synthetic_episodes(), 1, 4, seed=0).sample(8)
    m = RLAAutoencoder(tiny_config())
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = last = 0.0
    for i in range(200):
        loss, _ = m.loss(batch["s_t"], batch["s_th"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if i == 0 else first
        last = loss.item()
    assert last < first / 10, (first, last)


# ---------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    m = RLAAutoencoder(tiny_config())
    with torch.no_grad():
        m.dec_out.weight.normal_()  # make the output non-trivial
    m.save_pretrained(tmp_path / "ck", meta={"note": "x"})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "config.json",
        "meta.json",
        "model.safetensors",
    ]
    assert not list(tmp_path.glob("ck.tmp-*"))
    m2 = RLAAutoencoder.from_pretrained(tmp_path / "ck", expected_fingerprint="tiny@abc")
    assert m2.config == m.config
    s_t, s_th = torch.randn(2, N, D), torch.randn(2, N, D)
    m.eval()
    torch.testing.assert_close(m(s_t, s_th)[0], m2(s_t, s_th)[0])
    # Overwriting an existing folder keeps it loadable.
    m.save_pretrained(tmp_path / "ck")
    RLAAutoencoder.from_pretrained(tmp_path / "ck")


def test_fingerprint_mismatch(tmp_path: Path) -> None:
    RLAAutoencoder(tiny_config()).save_pretrained(tmp_path / "ck")
    with pytest.raises(EncoderMismatchError, match="tiny@abc"):
        RLAAutoencoder.from_pretrained(tmp_path / "ck", expected_fingerprint="other@123")


def test_corrupt_and_missing_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError):
        RLAAutoencoder.from_pretrained(tmp_path / "nope")
    RLAAutoencoder(tiny_config()).save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match=r"model\.safetensors"):
        RLAAutoencoder.from_pretrained(tmp_path / "ck")
    weights.unlink()
    with pytest.raises(CorruptFileError, match="missing"):
        RLAAutoencoder.from_pretrained(tmp_path / "ck")
    # Config keys unknown / shapes inconsistent with the weights.
    RLAAutoencoder(tiny_config()).save_pretrained(tmp_path / "c2")
    cfg_path = tmp_path / "c2" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        RLAAutoencoder.from_pretrained(tmp_path / "c2")
    cfg_path.write_text(json.dumps({**cfg, "width": 64}))
    with pytest.raises(CorruptFileError, match="shape"):
        RLAAutoencoder.from_pretrained(tmp_path / "c2")
    cfg_path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="JSON"):
        RLAAutoencoder.from_pretrained(tmp_path / "c2")


def test_save_checkpoint_with_optimizer_state(tmp_path: Path) -> None:
    m = RLAAutoencoder(tiny_config())
    opt = torch.optim.AdamW(m.parameters())
    save_checkpoint(tmp_path / "c", m.config, m, opt, {"step": 3}, {"a": 1})
    ck = load_checkpoint(tmp_path / "c")
    assert ck.train_state == {"step": 3} and ck.meta == {"a": 1} and ck.optimizer is not None


# ---------------------------------------------------------------------------- trainer
def _fit(out: Path, steps: int, crash_at: int | None = None) -> RLAAutoencoder:
    eps = synthetic_episodes()
    torch.manual_seed(0)
    model = RLAAutoencoder(tiny_config(dropout=0.1))  # dropout: the global RNG must resume too
    calls = {"n": 0}

    def loss_fn(mod: torch.nn.Module, batch: dict[str, torch.Tensor], g: torch.Generator):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise KeyboardInterrupt("simulated crash")
        noise = torch.randn(1, generator=g)  # exercises the trainer generator's resume
        loss, metrics = _rla_loss(mod, batch, g)
        return loss + 0.0 * noise.item(), metrics

    cfg = TrainerConfig(
        steps=steps,
        batch_size=4,
        learning_rate=1e-3,
        warmup_steps=3,
        ckpt_every=5,
        val_every=100,
        log_every=5,
        progress=False,
        tensorboard=False,
    )
    sampler = PairSampler(eps, 1, 4, seed=0)
    fit(model, loss_fn, sampler, cfg, out, model.config.to_dict())
    return model


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    ref = _fit(tmp_path / "a", steps=20)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", steps=20, crash_at=13)  # last checkpoint: step 10
    assert load_checkpoint(tmp_path / "b" / "checkpoint").train_state["step"] == 10  # type: ignore[index]
    resumed = _fit(tmp_path / "b", steps=20)
    for (k, v), (_, w) in zip(ref.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(v, w, msg=k)
    meta = load_checkpoint(tmp_path / "b" / "checkpoint").meta
    assert meta["step"] == 20 and meta["finished"]


def test_train_rla_in_memory(tmp_path: Path) -> None:
    cfg = TrainRLAConfig(
        out=str(tmp_path / "run"),
        rla=tiny_config(encoder_fingerprint=""),
        data=FeatureDataConfig(val_pairs=32),
        trainer=TrainerConfig(
            steps=30,
            batch_size=8,
            learning_rate=3e-3,
            val_every=15,
            ckpt_every=15,
            progress=False,
            device="cpu",
        ),
    )
    split = FeatureSplit(
        train=synthetic_episodes(), val=synthetic_episodes(n=2, seed=1), fingerprint="fp@1"
    )
    res = train_rla(cfg, split)
    assert res.step == 30 and res.checkpoint is not None
    assert res.val_metrics["val/l1"] > 0
    m = RLAAutoencoder.from_pretrained(res.checkpoint, expected_fingerprint="fp@1")
    assert m.config.num_tokens == N and m.config.feature_dim == D
    meta = json.loads((res.checkpoint / "meta.json").read_text())
    assert meta["encoder_fingerprint"] == "fp@1" and "wall_clock_s" in meta
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    again = train_rla(cfg, split)  # finished: no retraining
    assert again.step == 30 and again.resumed_from == 30


def _write_store(root: Path) -> None:
    """The synthetic episodes as an on-disk dataset with cached ``tiny`` features."""
    from rla_gym.data.episodes import Episode, EpisodeStore

    store = EpisodeStore(root)
    store.init_manifest({"sim": "synthetic", "task": "blob", "resolution": 8, "action_dim": A})
    store.begin_features("tiny", "tiny@abc")
    for i, (f, a) in enumerate(synthetic_episodes(n=6)):
        t = len(a)
        eid = store.episode_id("expert", i)
        store.write(
            eid,
            Episode(
                np.zeros((t + 1, 8, 8, 3), np.uint8),
                a,
                np.zeros((t + 1, 1), np.float32),
                np.zeros(t, np.float32),
                np.zeros(t + 1, bool),
                {"policy": "expert"},
            ),
        )
        store.write_features(eid, "tiny", f, "tiny@abc", (1, N))


def test_cli_trainer_flags_reach_the_trainer(tmp_path: Path) -> None:
    """``rla-gym train-rla`` flags of the nested configs (``--stop-at``, ``--betas``,
    ``--learning-rate``, ``--val-pairs``) reach the trainer; a checkpoint whose ``meta.json``
    holds an old flat train config resumes like any other."""
    from rla_gym.cli.main import main

    _write_store(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["train-rla", "--data", str(tmp_path / "data"), "--encoder", "tiny", "--out", str(out),
            "--latent-tokens", "2", "--latent-dim", "4", "--width", "32", "--depth", "1",
            "--heads", "2", "--max-gap", "4", "--steps", "6", "--batch-size", "4",
            "--learning-rate", "1e-3", "--betas", "0.5", "0.9", "--val-pairs", "4",
            "--val-fraction", "0.3", "--device", "cpu", "--num-threads", "1", "--no-progress",
            "--no-tensorboard"]  # fmt: skip
    assert main([*argv, "--stop-at", "4"]) == 0
    ck = load_checkpoint(out / "checkpoint")
    assert ck.train_state["step"] == 4 and not ck.meta["finished"]  # type: ignore[index]
    assert tuple(ck.optimizer["param_groups"][0]["betas"]) == (0.5, 0.9)  # type: ignore[index]
    cfg = ck.meta["train_config"]
    assert cfg["trainer"]["stop_at"] == 4 and cfg["data"]["val_pairs"] == 4
    assert cfg["data"]["folder"] == str(tmp_path / "data") and cfg["trainer"]["betas"] == [0.5, 0.9]
    # Older runs recorded the train config flat; resuming reads only weights, optimizer and RNG
    # state, so such a checkpoint continues unchanged.
    flat = {"data": str(tmp_path / "data"), "encoder": "tiny", "steps": 6, "lr": 1e-3}
    (out / "checkpoint" / "meta.json").write_text(json.dumps({**ck.meta, "train_config": flat}))
    assert main(argv) == 0
    ck = load_checkpoint(out / "checkpoint")
    assert ck.train_state["step"] == 6 and ck.meta["finished"]  # type: ignore[index]
    assert ck.meta["train_config"]["trainer"]["stop_at"] is None


def test_change_weighted_loss_counts_the_tokens_that_move() -> None:
    from rla_gym.rla import RLAConfig, reconstruction_loss

    s_t = torch.zeros(2, 8, 4)
    s_th = s_t.clone()
    s_th[:, 0] = 1.0  # only token 0 changes
    err = torch.zeros_like(s_t)
    on_moving, on_static = err.clone(), err.clone()
    on_moving[:, 0] = 0.5
    on_static[:, 3] = 0.5
    plain = [reconstruction_loss(s_th + e, s_th)[0] for e in (on_moving, on_static)]
    assert torch.isclose(plain[0], plain[1])  # the paper's loss cannot tell them apart
    weighted = [reconstruction_loss(s_th + e, s_th, s_t=s_t, change_weight=4.0)[0]
                for e in (on_moving, on_static)]  # fmt: skip
    assert weighted[0] > 2 * weighted[1]
    # The weights average 1: an error spread evenly over every token costs what it did.
    even = torch.full_like(s_t, 0.5)
    assert torch.isclose(reconstruction_loss(s_th + even, s_th, s_t=s_t, change_weight=4.0)[0],
                         reconstruction_loss(s_th + even, s_th)[0])  # fmt: skip
    with pytest.raises(ValueError, match="needs s_t"):
        reconstruction_loss(s_th, s_th, change_weight=1.0)
    with pytest.raises(ValueError, match="change_weight"):
        RLAConfig(change_weight=-1.0)


def test_linear_path_starts_as_the_best_linear_code(tmp_path: Path) -> None:
    """Residuals of rank 3: a rank-3 linear path initialised from them reconstructs them exactly,
    before any training, where the untrained transformer RLA predicts "nothing moves"."""
    torch.manual_seed(0)
    cfg = tiny_config(decoder_target="residual", linear_rank=3)
    model = RLAAutoencoder(cfg)
    s_t = torch.randn(64, N, D)
    residual = (torch.randn(64, 3) @ torch.randn(3, N * D)).view(64, N, D)
    energy = model.init_linear_path(residual)
    assert float(energy) == pytest.approx(1.0, abs=1e-5)
    s_hat, _ = model(s_t, s_t + residual)
    assert float((s_hat - s_t - residual).detach().abs().max()) < 1e-4
    plain = RLAAutoencoder(tiny_config(decoder_target="residual"))
    assert torch.equal(plain(s_t, s_t + residual)[0], s_t)
    # The path is part of the checkpoint.
    model.save_pretrained(tmp_path / "ckpt")
    again = RLAAutoencoder.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(again(s_t, s_t + residual)[0], s_hat)
    with pytest.raises(ValueError, match="no linear path"):
        plain.init_linear_path(residual)
    with pytest.raises(ValueError, match="at least linear_rank"):
        model.init_linear_path(residual[:2])
    with pytest.raises(ValueError, match="linear_rank must be in"):
        tiny_config(decoder_target="residual", linear_rank=9)  # |z| = 8
    with pytest.raises(ValueError, match="decoder_target='residual'"):
        tiny_config(decoder_target="absolute", linear_rank=2)


def test_train_rla_initialises_the_linear_path_once(tmp_path: Path) -> None:
    trainer = TrainerConfig(steps=10, batch_size=8, val_every=10, ckpt_every=5, progress=False,
                            device="cpu")  # fmt: skip
    cfg = TrainRLAConfig(
        out=str(tmp_path / "run"),
        rla=tiny_config(encoder_fingerprint="", decoder_target="residual", linear_rank=4),
        data=FeatureDataConfig(val_pairs=32),
        linear_init_pairs=128,
        trainer=trainer,
    )
    split = FeatureSplit(
        train=synthetic_episodes(), val=synthetic_episodes(n=2, seed=1), fingerprint="fp@1"
    )
    res = train_rla(cfg, split)
    meta = json.loads((res.checkpoint / "meta.json").read_text())
    assert 0.5 < meta["linear_path_energy"] <= 1.0
    # Same steps without the path: the PCA start reconstructs held-out pairs better.
    plain = train_rla(
        dataclasses.replace(cfg, out=str(tmp_path / "plain"), rla=tiny_config(
            encoder_fingerprint="", decoder_target="residual")), split)  # fmt: skip
    assert res.val_metrics["val/l1_vs_copy"] < plain.val_metrics["val/l1_vs_copy"] - 0.05
    # Resuming a finished run does not recompute (or overwrite) the path.
    ckpt_basis = RLAAutoencoder.from_pretrained(res.checkpoint).linear_basis.detach().clone()
    longer = train_rla(dataclasses.replace(cfg, trainer=dataclasses.replace(trainer, steps=15)),
                       split)  # fmt: skip
    assert longer.resumed_from == 10
    meta = json.loads((longer.checkpoint / "meta.json").read_text())
    assert meta["linear_path_energy"] is None
    assert not torch.equal(RLAAutoencoder.from_pretrained(longer.checkpoint).linear_basis,
                           torch.zeros_like(ckpt_basis))  # fmt: skip
    with pytest.raises(ValueError, match="below linear_rank"):
        train_rla(dataclasses.replace(cfg, out=str(tmp_path / "b"), linear_init_pairs=2), split)
