"""Which levers make the dream listen to actions? One row per lever, same data and step budget.

Every trained row starts from the same frozen RLA (the suite's embedded bundle's own, so the RLA
ceiling is shared), the same dataset and the same optimizer steps; only the lever differs. Every
row is scored by the counterfactual measurement (``rla_gym.evaluation.counterfactual``) on the
*same* restored real starts and outcomes, which are measured once and cached in
``<runs>/<suite>/real.npz``, through the env's own ``DreamCore.dream`` (the bundle's starts,
action scaling and noise; ``RLAWorldConfig.world_model`` swaps in each trained checkpoint).

Rows:

* ``bundle``: the shipped model (trained on the bundle's larger dataset; context, not a lever);
* ``rla-wm``: RLA-WM (``cpu-compact``) retrained on this data, no lever;
* ``rla-wm+dropout``: the same with action dropout (``--dropout``), sampled with classifier-free
  guidance weights ``--guidance`` (weight 1 = plain conditional sampling of that model);
* ``direct``: the direct-regression baseline on the same data and steps;
* ``rla``: the autoencoder itself, retrained on this data for ``--rla-steps`` with the bundle's
  RLA sizes and each ``--rla-change-weights`` value (0: the paper's uniform loss; > 0: the
  tokens that change weigh more, ``RLAConfig.change_weight``); scored by its *ceiling* only
  (the RLA decoding the true latent of each real outcome), which caps any RLA-WM built on it;
  each ``--rla-linear-ranks`` value ``r > 0`` adds a linear path of rank ``r`` initialised to the
  principal components of the training residuals (``RLAConfig.linear_rank``);
* ``pca``: for each ``--pca-ranks`` value ``r``, the best rank-``r`` *linear* code of the
  training residuals (an RLA whose only path is the linear one, initialised and not trained),
  scored by its ceiling: what ``r`` numbers can carry at all, with no learning;
* ``rla-wm over <rla row>`` (``--wm-over``): RLA-WM trained like ``rla-wm`` but over that
  retrained autoencoder instead of the bundle's, so it is capped by the new ceiling.

``--action-in-flow`` adds every trained RLA-WM row's action vector to the time embedding of
its flow blocks (``WorldModelConfig.action_in_flow``). ``--history K`` conditions every trained
RLA-WM row on the frame ``K`` control steps earlier as well (``WorldModelConfig.history``; use
the chunk); ``--sibling-fraction f`` fills that share of every trained RLA-WM row's batches with
sibling pairs from the data's branch points and trains their outcome difference as well
(``TrainWorldModelConfig.sibling_fraction``); ``--latent-norm`` / ``--latent-scale`` set the
``rla-wm`` row's latent normalisation (the bundles since 2026-11-30 use ``scalar`` / 1 over
an RLA with a linear path);
``--rla`` replaces the bundle's embedded autoencoder (stored in the bundle's reduced precision)
by a full-precision checkpoint.

Long, so resumable: trained checkpoints resume (``runs/levers/<suite>/<row>``), the real
outcomes are cached, and rows already in the JSON are skipped unless ``--redo``.

    python benchmarks/faithfulness_levers.py --suite robosuite-lift --data data/robosuite_lift
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from rla_gym.utils import load_json, provenance, save_json


@dataclass(frozen=True)
class Args:
    suite: str = "robosuite-lift"
    """embedded bundle whose RLA, starts, reference demos and simulator are used"""
    data: Path = Path("data/robosuite_lift")
    """dataset (with cached features of the bundle's encoder) every trained row learns from"""
    runs: Path = Path("runs/levers")
    """checkpoints and the cached real outcomes"""
    steps: int = 2000
    """optimizer steps of every trained row (the embedded Lift bundle's world model: 2000)"""
    dropout: float = 0.2
    """action-dropout probability of the dropout row"""
    guidance: tuple[float, ...] = (1.0, 2.0, 3.0)
    """guidance weights the dropout row is sampled with"""
    rla_steps: int = 1000
    """optimizer steps of every ``rla`` row (the embedded Lift bundle's RLA: 1000)"""
    rla_change_weights: tuple[float, ...] = (0.0, 4.0)
    """change weights of the ``rla`` rows (one autoencoder per weight and linear rank)"""
    rla_linear_ranks: tuple[int, ...] = (0,)
    """linear-path ranks of the ``rla`` rows (0: none)"""
    pca_ranks: tuple[int, ...] = (16, 32, 128)
    """ranks of the ``pca`` rows (at most the bundle's latent size)"""
    wm_over_latent_norm: str = "scalar"
    """latent normalisation of the ``--wm-over`` rows' world models: ``scalar`` (divide by
    ``--wm-over-latent-scale``) keeps the linear path's directions weighted by their size;
    ``per_dim`` (the other rows') whitens every number of ``z``"""
    wm_over_latent_scale: float = 1.0
    """divisor of ``z`` for ``--wm-over`` rows with ``scalar`` normalisation"""
    wm_over: tuple[str, ...] = ()
    """``rla`` or ``pca`` rows (e.g. ``"rla cw=0 r=32"``, ``"pca r=128"``) to train an RLA-WM
    row over, after the rows"""
    preset: str = "cpu-compact"
    """size preset of every trained RLA-WM row (the bundles': ``cpu-compact``; ``cpu-small`` is
    wider and deeper)"""
    action_in_flow: bool = False
    """every trained RLA-WM row's action vector also modulates each flow block"""
    history: int = 0
    """control steps back to the earlier frame every trained RLA-WM row also sees (0: none)"""
    sibling_fraction: float = 0.0
    """share of every trained RLA-WM row's batches drawn as sibling pairs from the data's branch
    points, trained on their outcome difference too (0: none; needs branch data)"""
    sibling_weight: float = 1.0
    """weight of that difference loss"""
    latent_norm: str | None = None
    """latent normalisation of the ``rla-wm`` row (default: the preset's ``per_dim``)"""
    latent_scale: float | None = None
    """divisor of ``z`` of the ``rla-wm`` row under ``--latent-norm scalar``"""
    rla: Path | None = None
    """frozen RLA checkpoint every trained row wraps (default: the bundle's embedded one)"""
    rows: tuple[str, ...] = ("bundle", "rla-wm+dropout", "direct", "rla-wm")
    """rows to run (train + score)"""
    train_only: bool = False
    """only train the rows (e.g. in a second process while the first measures reality)"""
    states: int = 30
    """real starts of the counterfactual measurement"""
    episodes: int = 10
    """held-out real episodes the starts are drawn from"""
    seed: int = 0
    """seed of training, perturbations and flow noise"""
    threads: int = 1
    """torch threads"""
    out: Path = Path("benchmarks/results/faithfulness_levers.json")
    """result JSON (rows are merged into it)"""
    tag: str = ""
    """suffix of the trained world-model rows' names and folders, e.g. ``"4000 steps"`` to keep
    a longer run (copy the shorter run's folder to continue it) beside the shorter row"""
    redo: bool = False
    """score rows that are already in the JSON again"""


def _rla_checkpoint(bundle: Path, folder: Path) -> Path:
    """The bundle's frozen RLA as a checkpoint of its own (what every trained row wraps)."""
    from rla_gym.envs.artifacts import load_artifacts

    ckpt = folder / "checkpoint"
    if not (ckpt / "config.json").exists():
        rla = load_artifacts(bundle).load_world_model().rla
        rla.save_pretrained(ckpt, meta={"source": f"{bundle}/world_model (embedded RLA)"})
    return ckpt


def _trainer(args: Args, steps: int) -> Any:
    """The optimisation settings every trained row shares (only the step count differs)."""
    from rla_gym.utils.training import TrainerConfig

    return TrainerConfig(
        steps=steps,
        warmup_steps=100,
        val_every=steps,
        ckpt_every=250,
        seed=args.seed,
        device="cpu",
        num_threads=args.threads,
        progress=False,
        tensorboard=False,
    )


def _rla_rows(args: Args) -> dict[str, tuple[float, int]]:
    """``{row name: (change weight, linear rank)}`` of the ``rla`` rows."""
    return {
        f"rla cw={w:g}" + (f" r={r}" if r else ""): (w, r)
        for w in args.rla_change_weights
        for r in args.rla_linear_ranks
    }


def _code_folder(args: Args, name: str) -> Path:
    """Checkpoint folder of an autoencoder row: ``"rla cw=4 r=32"`` -> ``.../rla-cw4-r32``,
    ``"pca r=128"`` -> ``.../pca-r128``."""
    kind, *rest = name.split()
    parts = dict(p.split("=", 1) for p in rest)
    if kind == "pca" and set(parts) == {"r"}:
        return args.runs / args.suite / f"pca-r{int(parts['r'])}"
    if kind == "rla" and "cw" in parts and not set(parts) - {"cw", "r"}:
        return _rla_folder(args, float(parts["cw"]), int(parts.get("r", 0)))
    raise ValueError(f"not an autoencoder row: {name!r} (e.g. 'rla cw=0 r=32' or 'pca r=128')")


def _rla_folder(args: Args, change_weight: float, rank: int) -> Path:
    return args.runs / args.suite / (f"rla-cw{change_weight:g}" + (f"-r{rank}" if rank else ""))


def _train(args: Args, row: str, rla: Path, action_dim: int) -> tuple[Path, dict[str, Any]]:
    from rla_gym.data.feature_episodes import FeatureDataConfig
    from rla_gym.world_model.config import world_model_preset
    from rla_gym.world_model.train import TrainWorldModelConfig, train_world_model

    folder = f"{row} {args.tag}" if args.tag else row
    out = args.runs / args.suite / folder.replace(" ", "_").replace("=", "")
    trainer = _trainer(args, args.steps)
    data = FeatureDataConfig(folder=str(args.data), val_pairs=64)
    if row == "direct":
        cfg = TrainWorldModelConfig(model="direct", data=data, out=str(out), trainer=trainer)
    else:
        dropout = args.dropout if row == "rla-wm+dropout" else 0.0
        norm = (
            {"latent_norm": args.wm_over_latent_norm, "latent_scale": args.wm_over_latent_scale}
            if row.startswith("rla-wm over ")
            else {
                k: v
                for k, v in (("latent_norm", args.latent_norm), ("latent_scale", args.latent_scale))
                if v is not None
            }
        )
        wm = world_model_preset(
            args.preset,
            action_dim,
            action_dropout=dropout,
            history=args.history,
            action_in_flow=args.action_in_flow,
            **norm,
        )
        cfg = TrainWorldModelConfig(
            model="rla-wm",
            data=data,
            rla=str(rla),
            out=str(out),
            world_model=wm,
            trainer=trainer,
            sibling_fraction=args.sibling_fraction,
            sibling_weight=args.sibling_weight,
        )
    t0 = time.perf_counter()
    res = train_world_model(cfg)
    meta = load_json(res.checkpoint / "meta.json")
    return res.checkpoint, {
        "steps": res.step,
        "train_wall_clock_s": meta.get("wall_clock_s"),
        "this_call_s": time.perf_counter() - t0,
        "val_metrics": res.val_metrics,
        "trainable_parameters": meta.get("trainable_parameters"),
        "data": str(args.data),
        **({"history": args.history} if args.history and row != "direct" else {}),
        **({"action_in_flow": True} if args.action_in_flow and row != "direct" else {}),
        **(
            {"sibling_fraction": args.sibling_fraction, "sibling_weight": args.sibling_weight}
            if args.sibling_fraction and row != "direct"
            else {}
        ),
        **({"preset": args.preset} if row != "direct" else {}),
    }


def _train_rla(
    args: Args, bundle: Path, change_weight: float, rank: int, steps: int | None = None,
    out: Path | None = None,
) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """The bundle's RLA sizes retrained on ``args.data`` with ``change_weight`` and a linear path
    of rank ``rank``, for ``steps`` (default ``--rla-steps``; 0 keeps the initialised model: with
    a linear path, the PCA code alone) into ``out`` (default: the row's folder)."""
    import dataclasses

    from rla_gym.data.feature_episodes import FeatureDataConfig
    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.rla.train import TrainRLAConfig, train_rla

    sizes = load_artifacts(bundle).load_world_model().rla.config
    trainer = _trainer(args, args.rla_steps if steps is None else steps)
    cfg = TrainRLAConfig(
        data=FeatureDataConfig(folder=str(args.data), val_pairs=64),
        out=str(out or _rla_folder(args, change_weight, rank)),
        rla=dataclasses.replace(sizes, change_weight=change_weight, linear_rank=rank),
        trainer=trainer,
    )
    t0 = time.perf_counter()
    res = train_rla(cfg)
    meta = load_json(res.checkpoint / "meta.json")
    return res.checkpoint, {
        "steps": res.step,
        "train_wall_clock_s": meta.get("wall_clock_s"),
        "this_call_s": time.perf_counter() - t0,
        "val_metrics": res.val_metrics,
        "linear_path_energy": meta.get("linear_path_energy"),
        "pairs": cfg.linear_init_pairs if rank else None,
        "data": str(args.data),
    }


def main(args: Args) -> dict[str, Any]:
    import torch

    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.evaluation.counterfactual import (
        CounterfactualConfig,
        RealOutcomes,
        measure_real,
        score_models,
        score_rla_ceiling,
    )
    from rla_gym.features import encoder_from_fingerprint
    from rla_gym.rla import RLAAutoencoder

    torch.set_num_threads(args.threads)
    bundle = resolve_artifacts(None, args.suite)
    man = load_artifacts(bundle).manifest
    cfg = CounterfactualConfig(states=args.states, episodes=args.episodes, seed=args.seed)
    result: dict[str, Any] = load_json(args.out) if args.out.exists() else {}
    suite_out = result.setdefault("suites", {}).setdefault(args.suite, {"rows": {}})

    rla = args.rla or _rla_checkpoint(bundle, args.runs / args.suite / "rla")
    if args.train_only:
        for row in args.rows:
            if row == "rla":
                for n, (w, r) in _rla_rows(args).items():
                    print(n, _train_rla(args, bundle, w, r)[1])
            elif row != "bundle":
                print(row, _train(args, row, rla, int(man["action_dim"]))[1])
        return result
    cache = args.runs / args.suite / "real.npz"
    if cache.exists():
        real = RealOutcomes.load(cache)
    else:
        fp = man["encoder_fingerprint"]
        kw = {"num_threads": args.threads} if fp.startswith("opennsfw") else {}
        real = measure_real(bundle, cfg, encoder=encoder_from_fingerprint(fp, **kw))
        real.save(cache)
    rla_rows = _rla_rows(args)
    written: set[str] = set()  # the rows this run scores
    for row in (*args.rows, *(f"rla-wm over {n}" for n in args.wm_over)):
        names = (
            [f"{row} g={w:g}" for w in args.guidance]
            if row == "rla-wm+dropout"
            else [n for n in rla_rows if n not in suite_out["rows"] or args.redo]
            if row == "rla"
            else [f"pca r={r}" for r in args.pca_ranks]
            if row == "pca"
            else [row]
        )
        if args.tag and row not in ("rla", "pca", "bundle"):
            names = [f"{n} ({args.tag})" for n in names]
        if all(n in suite_out["rows"] for n in names) and not args.redo:
            print(f"{row}: already in {args.out}, skipped")
            continue
        training: dict[str, Any] | None = None
        if row == "pca":
            for n, r in zip(names, args.pca_ranks, strict=True):
                # Zero steps: the linear path as initialised, the transformers' share still 0.
                ckpt, training = _train_rla(args, bundle, 0.0, r, steps=0,
                                            out=_code_folder(args, n))  # fmt: skip
                model = RLAAutoencoder.from_pretrained(ckpt).eval()
                written.add(n)
                suite_out["rows"][n] = {
                    "rla_ceiling": score_rla_ceiling(real, model),
                    "training": training,
                    "options": {"linear_rank": r, "pca_only": True},
                }
            _save(args, result, suite_out, real, cache, man, written)
            continue
        if row == "rla":
            for n in names:
                w, r = rla_rows[n]
                ckpt, training = _train_rla(args, bundle, w, r)
                t0 = time.perf_counter()
                ceiling = score_rla_ceiling(real, RLAAutoencoder.from_pretrained(ckpt).eval())
                written.add(n)
                suite_out["rows"][n] = {
                    "rla_ceiling": ceiling,
                    "training": training,
                    "options": {"rla": str(ckpt), "change_weight": w, "linear_rank": r},
                    "score_s": time.perf_counter() - t0,
                }
                _save(args, result, suite_out, real, cache, man, written)  # each row as it finishes
            continue
        if row == "bundle":
            models: dict[str, dict[str, Any]] = {row: {}}
        else:
            over = row.removeprefix("rla-wm over ")
            if over != row:
                base = _code_folder(args, over) / "checkpoint"
                if not base.exists():
                    raise FileNotFoundError(f"--wm-over {over!r}: train that rla row first: {base}")
            else:
                base = rla
            ckpt, training = _train(args, row, base, int(man["action_dim"]))
            models = {n: {"world_model": str(ckpt)} for n in names}
            if row == "rla-wm+dropout":
                for n, w in zip(names, args.guidance, strict=True):
                    models[n]["guidance"] = float(w)
        scored = score_models(real, cfg, models)
        seconds = scored.pop("_seconds")
        for n in names:
            written.add(n)
            suite_out["rows"][n] = {
                **scored[n],
                "training": training,
                "options": models[n],
                "score_s": seconds[n],
                **({"bundle_created_utc": man["created_utc"]} if row == "bundle" else {}),
            }
        _save(args, result, suite_out, real, cache, man, written)
    for name, r in suite_out["rows"].items():
        if "1" not in r:
            c = r["rla_ceiling"]
            print(
                f"{name:<24} ceiling dir {c['direction']:.3f} ratio {c['magnitude_ratio']:.3f}"
                f" rank {c['ranking_spearman']:.3f}"
            )
            continue
        h1, h4 = r["1"], r.get("4", {})
        print(
            f"{name:<24} dir {h1['direction']:.3f} ratio {h1['magnitude_ratio']:.3f} "
            f"rank {h1['ranking_spearman']:.3f} | 4 chunks L1 {h4.get('l1', float('nan')):.4f}"
            f" (copy {h4.get('copy_last_l1', float('nan')):.4f})"
        )
    return result


def _save(args: Args, result: dict[str, Any], suite_out: dict[str, Any], real: Any,
          cache: Path, man: dict[str, Any], written: set[str]) -> None:  # fmt: skip
    # Autoencoder rows train no world model: keep the world-model rows' steps and dropout.
    wm_rows = [r for r in args.rows if r not in ("rla", "pca")] + list(args.wm_over)
    wm = (
        {"steps": args.steps, "dropout": args.dropout}
        if wm_rows
        else {k: suite_out.get("run", {}).get(k) for k in ("steps", "dropout")}
    )
    suite_out["run"] = {
        "data": str(args.data), **wm, "rla_steps": args.rla_steps,
        "rla": (str(args.rla) if args.rla else "the bundle's RLA")
        + ", frozen, for every RLA-WM row but 'rla-wm over <rla row>'",
        "starts": len(real.starts), "real_outcomes": str(cache),
        "real_seconds": real.seconds, "git_sha": provenance()["git_sha"],
    }  # fmt: skip
    result.update(
        benchmark="faithfulness_levers",
        provenance=provenance(
            seed=args.seed,
            encoder=man["encoder_fingerprint"],
            device="cpu",
            torch_threads=args.threads,
        ),
    )
    # Merge with the file as it is now: another process may have added or re-scored rows
    # meanwhile (of this suite or another), so only the rows this run scored replace what is on
    # disk.
    on_disk = load_json(args.out) if args.out.exists() else {}
    suites = on_disk.get("suites", {})
    rows_now = suites.get(args.suite, {}).get("rows", {})
    mine = {k: v for k, v in suite_out["rows"].items() if k in written}
    suite_out["rows"] = {**rows_now, **mine}
    result["suites"] = {**suites, args.suite: suite_out}
    save_json(result, args.out)


if __name__ == "__main__":
    main(tyro.cli(Args))
