"""Does a world model follow the action on the branches it was trained on?

The counterfactual benchmark scores held-out real starts. When a model scores low there, this
asks the prior question: does it fit the action-dependence of its *own training data*? Branch
data (``rla-gym collect --policy branch``) holds, per branch point, several short episodes
from one exactly restored state under different action chunks. For branch points whose every
branch lies in the training split (the trainers' split: ``val_fraction`` 0.1, seed 0), each
model dreams one chunk from the shared start with every branch's actions (the flow noise shared
within a point, as in the counterfactual benchmark) and is scored with the same metrics:

* ``direction``: mean cosine between real and dreamed outcome differences of sibling branches;
* ``magnitude_ratio``: mean ``|dream_i - dream_j| / |real_i - real_j|``;
* ``rla_ceiling``: the same for the model's RLA decoding the true latent of each branch.

High here but low on the counterfactual benchmark: the model fits but does not generalise.
Low here too: it does not even fit its training data (capacity, training length).

    python benchmarks/branch_fit.py --data data/dmc_reacher_branches \\
        --models "rla-wm (3000 steps, + branches)=runs/levers/dmc-reacher/..."
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from rla_gym.utils import load_json, provenance, save_json


@dataclass(frozen=True)
class Args:
    data: Path = Path("data/dmc_reacher_branches")
    """dataset with branch episodes and cached features"""
    models: tuple[str, ...] = ()
    """``name=checkpoint`` world models to score"""
    encoder: str = "opennsfw-resnet50-res4"
    """feature cache to read"""
    points: int = 200
    """branch points scored (the first ones, in id order, whose branches are all in training)"""
    val_fraction: float = 0.1
    """the trainers' validation share (their default), to find the training split"""
    seed: int = 0
    """split seed of the trainers, and the flow-noise seed"""
    flow_steps: int = 10
    threads: int = 1
    out: Path = Path("benchmarks/results/branch_fit.json")


def branch_points(args: Args) -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``[(start (N, D), actions (K, A), end (N, D)) per branch]`` per training branch point."""
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.data.feature_episodes import branch_points as points_of

    store = EpisodeStore(args.data)
    train, _ = store.split(args.val_fraction, seed=args.seed)
    train_set = set(train)
    out = []
    for ids in points_of(args.data, store.episode_ids("branch"))[0].values():
        if len(ids) < 2 or not set(ids) <= train_set:
            continue
        rows = []
        for eid in ids:
            fe = store.load_features(eid, args.encoder)
            f = np.asarray(fe.features, np.float32)
            rows.append((f[0], np.asarray(fe.actions, np.float32), f[-1]))
        out.append(rows)
        if len(out) == args.points:
            break
    return out


def score(model: Any, points: list[Any], args: Args) -> dict[str, Any]:
    import torch

    from rla_gym.evaluation.counterfactual import pair_agreement

    dream_d, dream_r, ceil_d, ceil_r = [], [], [], []
    for i, rows in enumerate(points):
        start = torch.from_numpy(np.stack([r[0] for r in rows]))
        acts = torch.from_numpy(np.stack([r[1] for r in rows]))
        real = np.stack([r[2] for r in rows])
        gens = [torch.Generator().manual_seed(args.seed * 1_000_003 + i) for _ in rows]
        with torch.no_grad():
            dream = model.sample(start, acts, generator=gens, steps=args.flow_steps)[:, 0]
            ceiling = model.rla.decode(start, model.rla.encode(start, torch.from_numpy(real)))
        for pred, dirs, ratios in ((dream, dream_d, dream_r), (ceiling, ceil_d, ceil_r)):
            d, r = pair_agreement(real, pred.numpy())
            dirs.extend(d.tolist())
            ratios.extend(r.tolist())
    return {
        "direction": float(np.mean(dream_d)),
        "magnitude_ratio": float(np.mean(dream_r)),
        "pairs": len(dream_d),
        "rla_ceiling": {
            "direction": float(np.mean(ceil_d)),
            "magnitude_ratio": float(np.mean(ceil_r)),
        },
    }


def main(args: Args) -> dict[str, Any]:
    import torch

    from rla_gym.world_model import load_predictor

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    points = branch_points(args)
    result: dict[str, Any] = load_json(args.out) if args.out.exists() else {}
    models = result.setdefault("models", {})
    fp = None
    for spec in args.models:
        name, _, path = spec.partition("=")
        model = load_predictor(path).eval()
        fp = model.encoder_fingerprint
        models[name] = {**score(model, points, args), "checkpoint": path}
        m = models[name]
        print(f"{name}: direction {m['direction']:.3f} ratio {m['magnitude_ratio']:.3f} "
              f"(RLA ceiling {m['rla_ceiling']['direction']:.3f})")  # fmt: skip
    result.update(
        benchmark="branch_fit",
        data=str(args.data),
        points=len(points),
        split={"val_fraction": args.val_fraction, "seed": args.seed},
        wall_clock_s=time.perf_counter() - t0,
        provenance=provenance(
            seed=args.seed, encoder=fp or args.encoder, device="cpu", torch_threads=args.threads
        ),
    )
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
