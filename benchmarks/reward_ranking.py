"""Does the dream's reward rank real outcomes as the task does? On real frames, per suite.

A planner only needs its reward to *order* the outcomes of its candidate chunks correctly. From
real states along episodes of the bundle's base policy (the states its planner faces), ``M``
chunks run in the real simulator from the exactly restored state (the base's chunk plus Gaussian
noise of several scales, and uniform random chunks); the frame at each chunk's end is encoded and
scored by each reward, exactly as the dream scores a dreamed frame (``DreamCore.score``, demo
aligned by the episode's first frame, at the chunk's control step). Per state, the Spearman
correlation between each reward and the task's own order (``SimAdapter.task_score``, from
simulator state) is averaged over states.
A reward that ranks real outcomes poorly cannot steer a planner even in a perfect dream.

``--distance-head-data`` adds an upper bound for any head on these features: a progress head of
the bundle's architecture trained to read ``exp(-distance / 0.1)`` from a frame, with the true
finger-to-target distance of every frame of the dataset (from its recorded joint angles and
target) as the label; privileged at training time only, like the success flags.

``--heads`` scores bare progress-head checkpoints (``rla-gym train-progress``'s
``<out>/checkpoint``) beside the bundles, e.g. one trained with ``--proprio``: a head that reads
the body is given the real body vector of the scored frame (the simulator's raw proprio of the
chunk's last step, through :func:`~rla_gym.data.proprio.body_vector`), as a dream that carries
the body would give it; so is the progress head of a bundle that dreams the body (reacher's).

    python benchmarks/reward_ranking.py                                   # reacher's bundle
    python benchmarks/reward_ranking.py --bundles steps16=runs/bundles/reacher_steps16 \
        --distance-head-data data/dmc_reacher_easy
    python benchmarks/reward_ranking.py --heads body=runs/progress_body/checkpoint
    python benchmarks/reward_ranking.py --suite robosuite-lift --decisions 15 --every 3
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from rla_gym.data.proprio import body_vector
from rla_gym.envs.artifacts import nearest_demo
from rla_gym.envs.rla_world import DreamCore, RLAWorldConfig, resolve_artifacts
from rla_gym.evaluation.real import SavedPolicy
from rla_gym.reward.progress import ProgressHead
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.stats import spearman

NOISE = (0.0, 0.1, 0.3, 1.0)
"""Noise scales around the base's chunk; the rest of the candidates are uniform random."""


@dataclass(frozen=True)
class Args:
    suite: Literal["dmc-reacher", "robosuite-lift"] = "dmc-reacher"
    """whose embedded bundle (its rewards, base policy and real simulator)"""
    bundles: tuple[str, ...] = ()
    """more progress heads to score, as ``name=bundle folder`` (same encoder and references)"""
    heads: tuple[str, ...] = ()
    """bare progress-head checkpoint folders to score, as ``name=folder`` (same encoder as the
    bundle); one that reads the body gets the real body of the scored frame"""
    modes: tuple[str, ...] = ("aligned", "goal", "progress")
    """reward modes scored for every bundle"""
    episodes: int = 12
    """real episodes of the base policy (seeds seed + i)"""
    decisions: int = 4
    """base-policy decisions per episode (chunk boundaries from the start)"""
    every: int = 1
    """score the state at every this many decisions"""
    candidates: int = 16
    """chunks per state: 4 per noise scale of NOISE, then uniform random ones"""
    seed: int = 20_000
    """first reset seed (apart from the training and evaluation seeds)"""
    distance_head_data: Path | None = None
    """train (once; cached under runs/) and score the distance-supervised head on this reacher
    dataset"""
    distance_head_body: bool = False
    """with ``distance_head_data``, also train and score the distance-supervised head that reads
    the body (features + proprio; scored as a bare head, ``distance-supervised+body``)"""
    distance_head_labels: tuple[Literal["exp", "linear"], ...] = ("exp",)
    """the distance heads' labels, one head (pair, with ``distance_head_body``) each (see
    ``distance_label``); ``linear`` names its rows ``distance-supervised linear``"""
    distance_head_steps: int = 1500
    """its optimizer steps (batch 128, the bundle head's sizes)"""
    runs: Path = Path("runs/reward_ranking")
    out: Path = Path("benchmarks/results/reward_ranking.json")


def finger_distances(data: Path) -> dict[str, np.ndarray]:
    """True finger-to-target distance of every frame of a reacher dataset: ``{episode id:
    float32 (T+1,)}``, from the recorded joint angles (``proprio[:, :2]``) and the target, the
    last two entries of the episode's ``init_state``."""
    import h5py
    from dm_control import suite

    physics = suite.load("reacher", "easy").physics
    out = {}
    for f in sorted((Path(data) / "episodes").glob("*.h5")):
        with h5py.File(f, "r") as h:
            qpos, target = h["proprio"][:, :2], h["init_state"][-2:]
        d = []
        for q in qpos:
            physics.data.qpos[:] = q
            physics.forward()
            d.append(np.linalg.norm(target - physics.named.data.geom_xpos["finger", :2]))
        out[f.stem] = np.asarray(d, np.float32)
    return out


def distance_label(dist: np.ndarray, label: str) -> np.ndarray:
    """The distance head's progress label: ``exp(-d / 0.1)`` (``"exp"``, near 0 beyond ~0.25, so
    far states look alike) or ``1 - d / 0.5`` clipped to ``[0, 1]`` (``"linear"``, as steep far
    from the target as near it; reacher's arena is ~0.5 across)."""
    if label == "exp":
        return np.exp(-dist / 0.1)
    if label == "linear":
        return np.clip(1.0 - dist / 0.5, 0.0, 1.0)
    raise ValueError(f"distance label must be 'exp' or 'linear', got {label!r}")


def distance_head(
    data: Path, bundle: Path, steps: int, folder: Path, body: bool = False, label: str = "exp"
) -> tuple[Path, dict]:
    """The distance-supervised head in a copy of ``bundle`` (trained once, then reused).

    With ``body`` the head also reads the body vector of each frame (its finger is forward
    kinematics of the joint angles, so only the target has to come from the features); the dream
    cannot give such a head the body through a bundle yet, so it is returned bare.

    Returns:
        ``(bundle copy with the head, or the bare head folder with body, record)``: the record
        holds the held-out Spearman between the head's output and the true distance over all
        frames, and the training cost.
    """
    import dataclasses
    import shutil

    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.data.feature_episodes import load_body
    from rla_gym.data.proprio import body_spec
    from rla_gym.pipelines.build_bundle import add_progress_head
    from rla_gym.reward.progress import ProgressHead

    folder = folder / "body" if body else folder
    folder = folder if label == "exp" else folder / label
    result = folder / ("head" if body else "bundle")
    record_path = folder / "distance_head.json"
    if record_path.exists():
        return result, load_json(record_path)
    t0 = time.perf_counter()
    store, labels = EpisodeStore(data), finger_distances(data)
    train_ids, val_ids = store.split(0.15, seed=0)
    man = load_json(bundle / "manifest.json")

    def rows(ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        fe = [
            store.load_features(e, man["encoder"], expected_fingerprint=man["encoder_fingerprint"])
            for e in ids
        ]
        bodies = np.concatenate(load_body(data, ids)[0]) if body else None
        return (np.concatenate([f.features for f in fe]).astype(np.float16),
                np.concatenate([labels[e] for e in ids]),
                np.concatenate([f.success for f in fe]).astype(np.float32), bodies)  # fmt: skip

    s, dist, ok, p = rows(train_ids)
    sv, dist_v, _, pv_body = rows(val_ids)
    shipped = ProgressHead.from_pretrained(bundle / "progress")
    torch.manual_seed(0)
    config = shipped.config  # the bundle head's sizes and encoder
    if body:
        config = dataclasses.replace(config, proprio_fields=body_spec(man["sim"]).fields)
    head = ProgressHead(config)
    if p is not None:
        head.fit_body_stats(p)
    opt = torch.optim.AdamW(head.parameters(), 1e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    target = torch.from_numpy(distance_label(dist, label).astype(np.float32))

    def body_rows(x: np.ndarray | None, idx: Any) -> torch.Tensor | None:
        return None if x is None else torch.from_numpy(x[idx])

    for _ in range(steps):
        idx = rng.integers(0, len(s), 128)
        loss, _ = head.loss(torch.from_numpy(s[idx].astype(np.float32)), target[idx],
                            torch.from_numpy(ok[idx]), proprio=body_rows(p, idx))  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        pv = torch.cat([head(torch.from_numpy(sv[i : i + 512].astype(np.float32)),
                             body_rows(pv_body, slice(i, i + 512)))[0]
                        for i in range(0, len(sv), 512)]).numpy()  # fmt: skip
    head.save_pretrained(folder / "head")
    if not body:
        shutil.rmtree(folder / "bundle", ignore_errors=True)
        shutil.copytree(bundle, folder / "bundle")
        add_progress_head(folder / "bundle", folder / "head")
    record = {"data": str(data), "steps": steps, "train_episodes": len(train_ids), "body": body,
              "label": label,
              "heldout_frames": len(sv), "heldout_spearman_vs_distance": spearman(pv, -dist_v),
              "train_minutes": (time.perf_counter() - t0) / 60.0}  # fmt: skip
    save_json(record, record_path)
    return result, record


def head_record(bundle: Path) -> dict[str, Any]:
    """What a bundle's progress head is: its config (target, sizes) and where it was trained."""
    source = (load_json(bundle / "manifest.json").get("progress") or {}).get("source")
    return {**load_json(bundle / "progress" / "config.json"), "source": source}


def bare_heads(specs: tuple[str, ...], taken: set[str], fingerprint: str) -> dict[str, Any]:
    """``--heads``: ``{name: (head, record)}``, each head checked against the bundle's encoder.

    Raises:
        ValueError: a spec that is not ``name=folder`` or whose name is already taken.
    """
    out = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or name in taken or name in out:
            raise ValueError(
                f"--heads takes distinct name=folder (not a bundle's name), got {spec}"
            )
        head = ProgressHead.from_pretrained(folder, expected_fingerprint=fingerprint)
        out[name] = (head, {**load_json(Path(folder) / "config.json"), "source": folder})
    return out


def main(args: Args) -> dict[str, Any]:
    from rla_gym.envs.real import RealFeatureEnv

    torch.set_num_threads(1)
    embedded = resolve_artifacts(None, args.suite)
    man = load_json(embedded / "manifest.json")
    sources = {"bundle": str(embedded), **dict(b.split("=", 1) for b in args.bundles)}
    dist_record = None
    if args.distance_head_data is not None:
        if args.suite != "dmc-reacher":
            raise ValueError("--distance-head-data is reacher's (the finger-to-target distance)")
        records = {}
        for label in args.distance_head_labels:
            name = "distance-supervised" + ("" if label == "exp" else f" {label}")
            path, rec = distance_head(
                args.distance_head_data, embedded, args.distance_head_steps, args.runs, label=label
            )
            sources[name] = str(path)
            if args.distance_head_body:
                body_head, rec["body"] = distance_head(
                    args.distance_head_data, embedded, args.distance_head_steps, args.runs, True,
                    label,
                )  # fmt: skip
                args = dataclasses.replace(args, heads=(*args.heads, f"{name}+body={body_head}"))
            records[label] = rec
        # The first label's record where one was kept before; every label's under "labels".
        dist_record = {**records[args.distance_head_labels[0]], "labels": records}
    heads = bare_heads(args.heads, set(sources), man["encoder_fingerprint"])
    cores = {
        (name, mode): DreamCore(RLAWorldConfig(artifacts=path, reward_mode=mode))  # type: ignore[arg-type]
        for name, path in sources.items()
        for mode in args.modes
        if name == "bundle" or mode == "progress"  # other bundles differ only in their head
    }
    # The real body of the scored frames, only if some head reads it (a bundle whose head does
    # is given it as its dream of the body would give it: DreamCore.score(body=)).
    needs_body = any(h.config.proprio_fields for h, _ in heads.values()) or any(
        c.head_reads_body for c in cores.values()
    )
    env = RealFeatureEnv(sim=man["sim"], task=man["task"], resolution=int(man["resolution"]),
                         encoder=man["encoder"], chunk=int(man["chunk"]))  # fmt: skip
    base = SavedPolicy(str(embedded / "policy"))()
    k, a = int(man["chunk"]), int(man["action_dim"])
    rng = np.random.default_rng(args.seed)
    rho: dict[str, list[float]] = {f"{n} {m}": [] for n, m in cores}
    rho.update({f"{n} progress": [] for n in heads})
    t0 = time.perf_counter()
    for ep in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + ep)
        aligned = {key: nearest_demo(obs, c.art.reference[:, 0]) for key, c in cores.items()}
        for d in range(args.decisions):
            chunk = np.asarray(base(obs), np.float32).reshape(-1)
            if d % args.every:
                obs, _, term, trunc, _ = env.step(chunk)
                if term or trunc:
                    break
                continue
            per = args.candidates // (len(NOISE) + 1)
            cands = [chunk + s * rng.standard_normal((per, chunk.size)) for s in NOISE]
            cands.append(rng.uniform(-1, 1, (args.candidates - per * len(NOISE), chunk.size)))
            cand = np.clip(np.concatenate(cands), -1, 1).astype(np.float32)
            start = env.sim.get_sim_state()
            before = env.sim.set_sim_state(start, render=False)
            frames, raw, truth = [], [], []
            for c in cand:
                step, hit = env.sim.run_from(start, env.to_sim_action(c.reshape(k, a)))
                frames.append(step.frame)
                raw.append(step.proprio)
                truth.append(env.sim.task_score(before, step, hit))
            env.sim.set_sim_state(start, render=False)
            feats = torch.from_numpy(env.encoder.encode(np.stack(frames))).float()
            body = torch.from_numpy(body_vector(man["sim"], np.stack(raw))) if needs_body else None
            for name, (head, _) in heads.items():
                with torch.no_grad():
                    p, _ = head(feats, body if head.config.proprio_fields else None)
                rs = spearman(p.numpy(), truth)
                rho[f"{name} progress"].append(np.nan if rs is None else rs)
            for (name, mode), core in cores.items():
                demo_t = torch.full((len(cand),), aligned[(name, mode)], dtype=torch.long)
                r, _ = core.score(feats, demo_t, np.full(len(cand), (d + 1) * k), body=body)
                rs = spearman(r, truth)
                rho[f"{name} {mode}"].append(np.nan if rs is None else rs)
            obs, _, term, trunc, _ = env.step(chunk)
            if term or trunc:
                break
        print(f"episode {ep + 1}/{args.episodes}: {len(next(iter(rho.values())))} states",
              flush=True)  # fmt: skip
    env.close()
    rows = {
        key: {"spearman": float(np.nanmean(v)),
              "se": float(np.nanstd(v) / np.sqrt(max(np.isfinite(v).sum(), 1))),
              "states": int(np.isfinite(v).sum())}
        for key, v in rho.items()
    }  # fmt: skip
    entry = {
        "task": f"{man['sim']}/{man['task']}",
        "sources": sources,
        "heads": {
            **{n: head_record(Path(p)) for n, p in sources.items()},
            **{n: record for n, (_, record) in heads.items()},
        },
        "bundle_created_utc": man["created_utc"],
        "rows": rows,
        "candidates": args.candidates,
        "noise": list(NOISE),
        "wall_minutes": (time.perf_counter() - t0) / 60.0,
        **({"distance_head": dist_record} if dist_record else {}),
        "every": args.every,
    }
    old = load_json(args.out) if args.out.exists() else {}
    out = {
        "provenance": provenance(seed=args.seed, encoder=man["encoder_fingerprint"], device="cpu"),
        "suites": {**old.get("suites", {}), args.suite: entry},
    }
    save_json(out, args.out)
    for key, r in rows.items():
        print(f"{key:28s} spearman {r['spearman']:+.3f} ± {r['se']:.3f} ({r['states']} states)")
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
