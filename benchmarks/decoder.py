"""Frame-decoder quality: PSNR of decoded frames on held-out real and on imagined features.

For each suite, the decoder *stored in the embedded bundle* (int8 weights, as the env renders) is
scored on the held-out episodes of its own training split (recorded in ``<bundle>/decoder/
meta.json``) plus every episode of a fresh test folder (another collection seed; seen by neither
the decoder nor the world model):

* ``psnr_real``: decoder(real features of frame t) vs real frame t, every held-out frame: the
  decoder's own ceiling;
* ``psnr_imagined[h]``: from a real start frame t0 (every K-th frame), the bundle's world model
  dreams ``h`` chunks of K control steps with the episode's real actions; decoder(dreamed
  features) vs the real frame ``t0 + h K`` the same actions led to.

Beside them, for scale: ``psnr_real_at_horizon[h]`` (decoder on the real features of those same
target frames: the best a perfect world model could score), ``psnr_copy_start[h]`` (the decoded
start frame, i.e. "nothing moves"), and ``psnr_nearest_*`` (the nearest-frame bank render,
upsampled to the frame size). PSNR in dB over frames in ``[0, 1]``, mean over frames.
``foreground_l1_*``: mean absolute error over the pixels that differ from the held-out frames'
median by more than 0.1 (the moving robot and objects, which whole-frame PSNR hardly sees).

    python benchmarks/decoder.py                # the three suites, data from data/<suite data>
    python benchmarks/decoder.py --suites dmc-reacher --data data/dmc_reacher_easy
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from rla_gym.data.episodes import EpisodeStore
from rla_gym.decoder import psnr
from rla_gym.envs.artifacts import ASSETS_DIR, load_artifacts
from rla_gym.envs.render import nearest_frames, resize_nearest
from rla_gym.utils import provenance, save_json
from rla_gym.utils.io import load_json

DEFAULT_DATA = {
    "libero": "data/libero_object_0",
    "robosuite-lift": "data/robosuite_lift",
    "dmc-reacher": "data/dmc_reacher_easy",
}


@dataclass(frozen=True)
class Args:
    suites: tuple[str, ...] = ("libero", "robosuite-lift", "dmc-reacher")
    """Embedded bundles to score (each must ship a decoder)."""
    data: tuple[str, ...] = ()
    """Dataset folder per suite (default: the folders ``rla-gym train-decoder`` used, from the
    bundle's decoder record; else data/libero_object_0, data/robosuite_lift,
    data/dmc_reacher_easy)."""
    test_data: tuple[str, ...] = ()
    """Extra folder per suite whose episodes are *all* scored too: fresh episodes (another
    collection seed) that neither the decoder nor the world model saw (default:
    data/test/<suite data> when it exists)."""
    horizons: tuple[int, ...] = (1, 4)
    """Imagined horizons in chunks of K control steps."""
    max_starts: int = 96
    """Cap on imagined start frames per suite (evenly spaced over all candidates)."""
    flow_steps: int = 10
    """Euler steps per chunk (the env's default)."""
    seed: int = 0
    """Seed of the flow noise."""
    threads: int = 1
    """Torch intra-op threads."""
    out: Path = Path("benchmarks/results/decoder.json")


def _psnr_np(pred: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``uint8 (B, H, W, 3)`` pairs -> ``(B,)`` PSNR in dB."""
    return psnr(
        torch.from_numpy(pred).float() / 255.0, torch.from_numpy(real).float() / 255.0
    ).numpy()


def _decode(decoder: Any, feats: np.ndarray, batch: int = 64) -> np.ndarray:
    """``float (B, N, D)`` -> ``uint8 (B, H, W, 3)`` through the checked render path."""
    out = [
        decoder.render(torch.from_numpy(np.asarray(feats[i : i + batch], np.float32)))
        for i in range(0, len(feats), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


def _nearest(art: Any, feats: np.ndarray, size: int) -> np.ndarray:
    frames = nearest_frames(
        torch.from_numpy(np.asarray(feats, np.float32)),
        torch.from_numpy(art.render_pooled),
        art.render_frames,
    )
    return np.stack([resize_nearest(f, size) for f in frames])


def score_suite(suite: str, data: str | None, test: str | None, args: Args) -> dict[str, Any]:
    t0 = time.time()
    art = load_artifacts(ASSETS_DIR / suite)
    decoder = art.load_decoder()
    record = art.manifest["decoder"]
    meta = load_json(art.path / "decoder" / "meta.json")
    data = data or meta.get("data") or DEFAULT_DATA[suite]
    val_ids = meta.get("val_episode_ids")
    if not val_ids:
        raise SystemExit(f"{art.path}/decoder/meta.json names no held-out episodes")
    # The decoder's own held-out episodes, plus every episode of the fresh test folder.
    episodes = [(EpisodeStore(data), eid) for eid in val_ids]
    test = test or str(Path("data/test") / Path(DEFAULT_DATA[suite]).name)
    if Path(test, "dataset.json").exists():
        tstore = EpisodeStore(test)
        episodes += [(tstore, eid) for eid in tstore.episode_ids()]
    else:
        test = None
    enc, fp, k = art.manifest["encoder"], art.manifest["encoder_fingerprint"], art.chunk
    size = int(decoder.config.resolution)
    model = art.load_world_model()
    gen = torch.Generator().manual_seed(args.seed)

    real_psnr, nearest_psnr = [], []
    starts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # feats, frames, actions, t0
    real_all, decoded_all, nearest_all = [], [], []
    for store, eid in episodes:
        fe = store.load_features(eid, enc, expected_fingerprint=fp)
        frames = store.read(eid).frames
        decoded = _decode(decoder, fe.features)
        nearest = _nearest(art, fe.features, size)
        real_psnr.append(_psnr_np(decoded, frames))
        nearest_psnr.append(_psnr_np(nearest, frames))
        real_all.append(frames)
        decoded_all.append(decoded)
        nearest_all.append(nearest)
        for t in range(0, len(fe.actions) - k + 1, k):
            starts.append((fe.features, frames, fe.actions, t))
    # Foreground: pixels away from the held-out frames' median (the static background); PSNR over
    # the whole frame is dominated by the background and hardly sees a thin arm.
    real_cat = np.concatenate(real_all).astype(np.float32) / 255
    fg = np.abs(real_cat - np.median(real_cat, axis=0)).mean(-1) > 0.1

    def fg_l1(pred: list[np.ndarray]) -> float:
        err = np.abs(np.concatenate(pred).astype(np.float32) / 255 - real_cat).mean(-1)
        return float(err[fg].mean()) if fg.any() else float("nan")

    if len(starts) > args.max_starts:
        keep = np.linspace(0, len(starts) - 1, args.max_starts).round().astype(int)
        starts = [starts[i] for i in keep]

    rows: dict[str, dict[str, list[np.ndarray]]] = {
        name: {str(h): [] for h in args.horizons}
        for name in ("imagined", "nearest_imagined", "real_at_horizon", "copy_start")
    }
    h_max = max(args.horizons)
    # Starts grouped by how many chunks fit before the episode ends, one batched rollout each.
    by_len: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = {}
    for s in starts:
        n = min(h_max, (len(s[2]) - s[3]) // k)
        by_len.setdefault(n, []).append(s)
    for n, group in sorted(by_len.items()):
        s0 = torch.from_numpy(np.stack([g[0][g[3]] for g in group]).astype(np.float32))
        chunks = [
            torch.from_numpy(
                np.stack([g[2][g[3] + i * k : g[3] + (i + 1) * k] for g in group]).astype(
                    np.float32
                )
            )
            for i in range(n)
        ]
        with torch.no_grad():
            dreamed = model.rollout(s0, chunks, steps=args.flow_steps, generator=gen).numpy()
        start_img = _decode(decoder, s0.numpy())
        for h in args.horizons:
            if h > n:
                continue
            target = np.stack([g[1][g[3] + h * k] for g in group])
            real_feats = np.stack([g[0][g[3] + h * k] for g in group])
            rows["imagined"][str(h)].append(_psnr_np(_decode(decoder, dreamed[:, h - 1]), target))
            rows["nearest_imagined"][str(h)].append(
                _psnr_np(_nearest(art, dreamed[:, h - 1], size), target)
            )
            rows["real_at_horizon"][str(h)].append(_psnr_np(_decode(decoder, real_feats), target))
            rows["copy_start"][str(h)].append(_psnr_np(start_img, target))

    def mean(parts: list[np.ndarray]) -> float | None:
        return float(np.concatenate(parts).mean()) if parts else None

    real = np.concatenate(real_psnr)
    return {
        "psnr_real": float(real.mean()),
        "psnr_imagined": {h: mean(v) for h, v in rows["imagined"].items()},
        "decoder_mb": record["bytes"] / 1e6,
        "psnr_real_std": float(real.std()),
        "psnr_real_at_horizon": {h: mean(v) for h, v in rows["real_at_horizon"].items()},
        "psnr_copy_start": {h: mean(v) for h, v in rows["copy_start"].items()},
        "psnr_nearest_real": float(np.concatenate(nearest_psnr).mean()),
        "foreground_l1_real": fg_l1(decoded_all),
        "foreground_l1_nearest_real": fg_l1(nearest_all),
        "foreground_fraction": float(fg.mean()),
        "psnr_nearest_imagined": {h: mean(v) for h, v in rows["nearest_imagined"].items()},
        "frames_real": len(real),
        "starts": {h: int(sum(len(p) for p in v)) for h, v in rows["imagined"].items()},
        "heldout_episodes": [f"{st.root}/{eid}" for st, eid in episodes],
        "data": str(data),
        "test_data": test,
        "chunk": k,
        "resolution": size,
        "bundle_total_mb": art.manifest["total_bytes"] / 1e6,
        "decoder": {
            key: record.get(key)
            for key in (
                "parameters",
                "dtype",
                "training_steps",
                "wall_clock_s",
                "heldout_psnr",
                "stored_vs_float32_psnr",
                "train_episodes",
            )
        },
        "train_frames": meta.get("train_frames"),
        "train_episodes": meta.get("train_episodes"),
        "wall_clock_s": time.time() - t0,
    }


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    for name, folders in (("--data", args.data), ("--test-data", args.test_data)):
        if folders and len(folders) != len(args.suites):
            raise SystemExit(f"{name} needs one folder per suite")
    result: dict[str, Any] = {
        "provenance": provenance(
            flow_steps=args.flow_steps,
            seed=args.seed,
            horizons=list(args.horizons),
            max_starts=args.max_starts,
            target_psnr_real_db=20.0,
        )
    }
    for i, suite in enumerate(args.suites):
        result[suite] = score_suite(
            suite,
            args.data[i] if args.data else None,
            args.test_data[i] if args.test_data else None,
            args,
        )
        r = result[suite]
        print(
            f"{suite}: real {r['psnr_real']:.2f} dB, imagined {r['psnr_imagined']}, "
            f"nearest {r['psnr_nearest_real']:.2f} dB, {r['decoder_mb']:.2f} MB",
            flush=True,
        )
    save_json(result, args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main(tyro.cli(Args))
