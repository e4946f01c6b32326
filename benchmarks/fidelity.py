"""Prediction-fidelity benchmark: RLA-WM vs baselines on held-out feature episodes.

Autoregressive rollouts from real start frames of the validation episodes, with the recorded
actions in chunks of ``--chunk`` control steps; feature L1 and cosine at horizons 8/16/32 (see
:mod:`rla_gym.evaluation.fidelity`). Writes a JSON with provenance, seeds, encoder, device, each
model's training wall-clock (from its checkpoint's ``meta.json``) and the metrics table, plus a PNG
of L1 (and cosine) against horizon.

Example::

    python benchmarks/fidelity.py --data data/libero_spatial --encoder opennsfw-resnet50-res4 \\
        --rla runs/rla/checkpoint --wm runs/wm/checkpoint --direct runs/direct/checkpoint \\
        --fm runs/fm/checkpoint
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from rla_gym.data.episodes import EpisodeStore
from rla_gym.evaluation import evaluate_fidelity
from rla_gym.rla import RLAAutoencoder
from rla_gym.utils import provenance, resolve_device, save_json
from rla_gym.world_model import CopyLastFrame, Predictor, load_predictor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder (EpisodeStore)")
    p.add_argument("--encoder", required=True, help="feature encoder name (features/<encoder>/)")
    p.add_argument("--rla", required=True, help="RLA autoencoder checkpoint folder")
    p.add_argument("--wm", required=True, help="RLA-WM checkpoint folder")
    p.add_argument("--direct", required=True, help="direct-regression baseline checkpoint folder")
    p.add_argument("--fm", default=None, help="feature-space flow baseline checkpoint (optional)")
    p.add_argument("--out", default="benchmarks/results/fidelity.json")
    p.add_argument("--plot", default="benchmarks/results/fidelity.png")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="must match training so the episodes are really held out",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split")
    p.add_argument("--seed", type=int, default=2026, help="seed of start frames and flow noise")
    p.add_argument("--chunk", type=int, default=8, help="control steps per predicted chunk")
    p.add_argument("--horizons", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--starts-per-episode", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="flow solver steps (default: model's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-episodes", type=int, default=None, help="cap on validation episodes")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def plot(results: dict[str, Any], path: Path) -> None:
    """L1 and cosine against horizon, one line per model (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_l1, ax_cos) = plt.subplots(1, 2, figsize=(10, 4))
    for name, entry in results["models"].items():
        m = entry["metrics"]
        hs = [h for h in m["horizons"] if m["l1"][str(h)] is not None]
        ax_l1.plot(hs, [m["l1"][str(h)] for h in hs], marker="o", label=name)
        ax_cos.plot(hs, [m["cosine"][str(h)] for h in hs], marker="o", label=name)
    recon = results.get("rla_reconstruction", {}).get("l1")
    if recon is not None:
        ax_l1.axhline(
            recon, ls="--", c="grey", lw=1, label=f"RLA recon. @ {results['config']['chunk']} steps"
        )
    titles = ((ax_l1, "feature L1 (lower is better)"), (ax_cos, "cosine (higher is better)"))
    for ax, title in titles:
        ax.set_xlabel("horizon (control steps)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_l1.legend(fontsize=8)
    fig.suptitle(
        f"Rollout fidelity, {results['config']['encoder']}, "
        f"{results['config']['val_episodes']} held-out episodes"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    store = EpisodeStore(args.data)
    _, val_ids = store.split(args.val_fraction, seed=args.split_seed)
    if args.max_episodes is not None:
        val_ids = val_ids[: args.max_episodes]
    if not val_ids:
        raise SystemExit(
            f"no validation episodes in {args.data} (val_fraction={args.val_fraction})"
        )
    fingerprint = store.feature_fingerprint(args.encoder)
    episodes = [
        store.load_features(i, args.encoder, expected_fingerprint=fingerprint) for i in val_ids
    ]
    fingerprint = episodes[0].fingerprint

    rla = RLAAutoencoder.from_pretrained(args.rla, device=device, expected_fingerprint=fingerprint)
    predictors: dict[str, tuple[Predictor, str | None]] = {"copy-last": (CopyLastFrame(), None)}
    for name, ckpt in (("rla-wm", args.wm), ("direct", args.direct), ("fm", args.fm)):
        if ckpt:
            predictors[name] = (load_predictor(ckpt, fingerprint, device), ckpt)

    common = dict(
        chunk=args.chunk,
        horizons=args.horizons,
        seed=args.seed,
        steps=args.steps,
        starts_per_episode=args.starts_per_episode,
        batch_size=args.batch_size,
        device=device,
    )
    models: dict[str, Any] = {}
    recon: dict[str, Any] = {}
    with torch.no_grad():
        for name, (pred, ckpt) in predictors.items():
            t0 = time.perf_counter()
            # The RLA reconstruction is measured once, alongside RLA-WM, on the same starts.
            res = evaluate_fidelity(pred, episodes, rla=rla if name == "rla-wm" else None, **common)  # type: ignore[arg-type]
            eval_s = time.perf_counter() - t0
            if name == "rla-wm":
                recon = {
                    "gap": args.chunk,
                    "l1": res.pop("rla_recon_l1"),
                    "cosine": res.pop("rla_recon_cosine"),
                    "count": res.pop("rla_recon_count"),
                }
            else:
                for k in ("rla_recon_l1", "rla_recon_cosine", "rla_recon_count"):
                    res.pop(k)
            meta = getattr(pred, "meta", {}) or {}
            models[name] = {
                "checkpoint": ckpt,
                "train_wall_clock_s": meta.get("wall_clock_s"),
                "train_steps": meta.get("step"),
                "trainable_parameters": meta.get("trainable_parameters"),
                "eval_wall_clock_s": eval_s,
                "metrics": res,
            }
            print(
                f"{name:10s} "
                + "  ".join(
                    f"L1@{h}={res['l1'][str(h)]:.4f}"
                    for h in res["horizons"]
                    if res["l1"][str(h)] is not None
                )
                + f"  ({eval_s:.1f} s)",
                flush=True,
            )

    table = [
        {
            "model": name,
            "horizon": h,
            "l1": e["metrics"]["l1"][str(h)],
            "cosine": e["metrics"]["cosine"][str(h)],
            "count": e["metrics"]["count"][str(h)],
        }
        for name, e in models.items()
        for h in e["metrics"]["horizons"]
    ]
    results = {
        "benchmark": "fidelity",
        "provenance": provenance(),
        "config": {
            "data": str(args.data),
            "encoder": args.encoder,
            "encoder_fingerprint": fingerprint,
            "device": str(device),
            "val_fraction": args.val_fraction,
            "split_seed": args.split_seed,
            "seed": args.seed,
            "chunk": args.chunk,
            "horizons": sorted(set(args.horizons)),
            "starts_per_episode": args.starts_per_episode,
            "flow_steps": args.steps,
            "val_episodes": len(val_ids),
            "val_ids": val_ids,
            "rla_checkpoint": args.rla,
        },
        "rla_reconstruction": recon,
        "models": models,
        "table": table,
    }
    save_json(results, args.out)
    plot(results, Path(args.plot))
    print(f"wrote {args.out} and {args.plot}")
    return results


if __name__ == "__main__":
    main()
