"""World-model training entry points (CLI, resume, benchmark), guidance, history, action in the
flow and sibling pairs (tiny, CPU)."""

# ruff: noqa: F811 (the tiny RLA and its episodes are tiny_world's fixtures, used by name)

from __future__ import annotations

from pathlib import Path

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
    render_points,
    rla,
    synthetic_episodes,
)

from rla_gym.data.windows import PairSampler
from rla_gym.rla import RLAAutoencoder
from rla_gym.utils.checkpoint import read_config
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
