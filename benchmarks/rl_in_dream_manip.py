"""Does improving a policy in the dream pay off in reality? LIBERO or robosuite Lift.

Policies, every one judged on the same real episodes (LIBERO: init states ``0..episodes-1``;
Lift: seeds ``eval_seed + i``), the task's own horizon, success = the simulator's:

* ``bc``: the bundle's base policy (its manifest names the method: ``bc``, plain behaviour
  cloning, or ``bc+rla``, BC with the RLA head trained on action-free videos too);
* ``bc-plain``: with ``--plain-bc``, a plain-BC policy on the same episodes, so a bundle whose base
  is BC + RLA head is also compared with the plain BC it improves on;
* ``bc+ppo``: residual PPO on top of it, trained only in the dream
  (:func:`rla_gym.pipelines.wmrl.run_wmrl`, the paper's §8.2 recipe), one run per seed, pooled;
* ``bc-plain+ppo``: the same residual PPO on top of the plain BC of ``--plain-bc`` (the weaker
  base, with more room to improve);
* ``bc+ppo-short``: the same with the paper's dreamed episodes: at most ``--short-chunks``
  chunks, half of them starting at a random frame of a reference demo (``--short-demo-fraction``);
* ``planner``: MPC with the dream planner (CEM over residuals around the BC chunk);
* ``distilled``: the planner distilled into a residual head on BC by behaviour cloning on its
  dreamed plans (runs at BC cost).

Writes ``benchmarks/results/rl_in_dream_<libero|lift>.json`` with the success counts, Wilson
intervals and the per-seed rows. Every real evaluation is logged episode by episode under
``runs/rl_in_dream_manip/<suite>/<bundle>`` and a re-run resumes; PPO runs resume from their
checkpoints. Rows belong to one bundle (its manifest's ``created_utc``): when the bundle is
rebuilt, the file's earlier rows move under ``superseded`` and the new bundle starts afresh, so
no table mixes policies improved in two different dreams.

    python benchmarks/rl_in_dream_manip.py --suite robosuite-lift          # ~60 min on 2 cores
    python benchmarks/rl_in_dream_manip.py --suite robosuite-lift --episodes 2 --seeds 0 \\
        --ppo-steps 512 --planner-samples 8 --distill-starts 2 --runs /tmp/rim \\
        --out /tmp/rim.json                                                   # smoke run
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import tyro

from rla_gym.envs.rla_world import resolve_artifacts
from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim
from rla_gym.planning import PlannerConfig, PlannerPolicy
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.provenance import rows_of_bundle
from rla_gym.utils.stats import wilson_interval

SHORT = {"libero": "libero", "robosuite-lift": "lift"}


@dataclass(frozen=True)
class Args:
    suite: Literal["libero", "robosuite-lift"] = "robosuite-lift"
    """which embedded bundle (or --artifacts of that suite)"""
    artifacts: str | None = None
    """bundle folder (default: the suite's embedded bundle)"""
    policies: tuple[str, ...] = ("bc", "bc+ppo", "bc+ppo-short", "planner", "distilled")
    """which policies to run (rows of policies not run are kept from the existing JSON)"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """residual-PPO seeds (each its own dream run and real evaluation)"""
    ppo_steps: int = 12_288
    """dreamed env steps (chunks, summed over envs) of residual PPO per seed"""
    residual_scale: float = 0.1
    """largest residual change per normalised action value of the PPO head (paper: 0.1)"""
    residual_lr: float = 1e-4
    """PPO learning rate of the residual head and critic (paper: 1e-4)"""
    reward_mode: Literal["aligned", "goal", "progress"] | None = None
    """the dreamed reward residual PPO trains on and its imagined evaluation reports (default:
    the env's, aligned)"""
    uncertainty_penalty: float = 0.0
    """residual PPO's dreamed reward pays minus this weight times the spread of 2 flow samples
    per step (``WMRLConfig.uncertainty_penalty``; 0: off)"""
    tag: str = ""
    """names the residual-PPO rows ``<row> <tag>`` with their own runs and logs, so a variant
    (another reward, scale, rate or length) sits beside the default row"""
    short_chunks: int = 6
    """``bc+ppo-short``: dreamed training episodes of this many chunks (paper: at most 6)"""
    short_demo_fraction: float = 0.5
    """``bc+ppo-short``: share of training episodes starting mid-demo (paper: 0.5)"""
    episodes: int = 50
    """real episodes per policy (per seed for bc+ppo)"""
    eval_seed: int = 0
    """first real reset seed (robosuite); LIBERO uses its fixed init states 0..episodes-1"""
    planner_samples: int = 32
    """CEM candidates per iteration of the planner"""
    planner_iterations: int = 2
    """CEM refits per decision"""
    planner_residual: float = 0.2
    """the planner searches residuals of this size around the BC chunk"""
    planner_reward_mode: Literal["aligned", "goal", "progress"] | None = None
    """the dreamed reward the planner scores by (default: the env's, aligned); another mode
    makes the row ``planner <mode>``"""
    distill_starts: int = 50
    """reset-bank starts the planner is recorded from in the dream for distillation"""
    distill_steps: int = 500
    """behaviour-cloning steps of the distilled residual head"""
    plain_bc: Path | None = None
    """``bc-plain``: a plain-BC policy folder (``rla-gym train-bc`` without ``--rla-head``)"""
    runs: Path = Path("runs/rl_in_dream_manip")
    """PPO runs, distilled policy and per-episode evaluation logs (resumable)"""
    out: Path | None = None
    """result JSON (default: benchmarks/results/rl_in_dream_<libero|lift>.json)"""


def _runs(args: Args, man: dict[str, Any]) -> Path:
    """This bundle's folder of PPO runs, distilled policy and evaluation logs."""
    return args.runs / args.suite / man["created_utc"].replace(":", "")


def _real(args: Args, man: dict[str, Any], name: str, factory: Any) -> dict[str, Any]:
    cfg = RealEvalConfig.for_bundle(man, episodes=args.episodes, workers=1, seed=args.eval_seed)
    runs = _runs(args, man)
    res = evaluate_in_sim(factory, cfg, progress=False, resume=runs / "eval" / f"{name}.jsonl",
                          identity={"name": name, "policy": to_jsonable(factory)})  # fmt: skip
    print(f"[{name}] real success {res['successes']}/{res['episodes']}", flush=True)
    return {"success": res["successes"], "episodes": res["episodes"],
            "wilson95": res["wilson95"], "mean_length": res["mean_length"],
            "mean_decision_s": res["mean_decision_s"],
            "per_episode_success": [bool(r["success"]) for r in res["rows"]]}  # fmt: skip


def _rate(row: dict[str, Any]) -> float:
    return row["success"] / row["episodes"]


def _pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    k, n = sum(r["success"] for r in rows), sum(r["episodes"] for r in rows)
    out = {"success": k, "episodes": n, "wilson95": list(wilson_interval(k, n))}
    for key in ("imagined", "imagined_base"):  # summed over seeds, return averaged by episode
        dreamt = [r[key] for r in rows if key in r]
        if dreamt:
            m = sum(d["episodes"] for d in dreamt)
            out[key] = {"success": sum(d["success"] for d in dreamt), "episodes": m,
                        "return": sum(d["return"] * d["episodes"] for d in dreamt) / m}  # fmt: skip
    return out


def _imagined(dream: dict[str, Any]) -> dict[str, Any]:
    """A :func:`~rla_gym.pipelines.wmrl.dream_evaluate` record -> successes, episodes, return."""
    return {"success": int(sum(dream["success_any"])), "episodes": len(dream["success_any"]),
            "return": float(dream["mean_return"])}  # fmt: skip


# The residual-PPO rows and the prefix of their per-seed run folders.
PPO_ROWS = {"bc+ppo": "ppo", "bc+ppo-short": "ppo_short", "bc-plain+ppo": "plain_ppo"}


def _row_name(args: Args, name: str) -> str:
    """A residual-PPO row's name in the result file: ``--tag`` names a variant's own row."""
    return f"{name} {args.tag}" if args.tag and name in PPO_ROWS else name


def bc_ppo(args: Args, bundle: Path, man: dict[str, Any], name: str,
           save: Any = None) -> dict[str, Any]:  # fmt: skip
    """Residual PPO in the dream per seed, each judged on the same real episodes; pooled.

    ``name`` is one of :data:`PPO_ROWS`: ``-short`` uses the paper's short dreamed episodes with
    mid-demo starts; ``bc-plain+`` trains on top of ``--plain-bc`` instead of the bundle's base.
    ``save(row)`` is called after every seed with the row pooled so far (a long run keeps what
    it finished)."""
    from rla_gym.pipelines.wmrl import WMRLConfig, run_wmrl

    folder, short, plain = PPO_ROWS[name], name.endswith("-short"), name.startswith("bc-plain")
    if args.tag:
        folder = f"{folder}_{args.tag.replace(' ', '_').replace(',', '')}"
    episodes = (
        {"reset_demo_fraction": args.short_demo_fraction, "episode_chunks": args.short_chunks}
        if short
        else {}
    )
    # The row of the base it started from (what the dream is judged to have added to).
    recipe = {"base": "bc-plain" if plain else "bc", "ppo_steps": args.ppo_steps,
              "residual_scale": args.residual_scale, "residual_lr": args.residual_lr,
              "uncertainty_penalty": args.uncertainty_penalty}  # fmt: skip
    per_seed: list[dict[str, Any]] = []
    for seed in args.seeds:
        run = run_wmrl(WMRLConfig(
            suite=args.suite, artifacts=str(bundle),
            out=_runs(args, man) / f"{folder}_{seed}",
            ppo_steps=args.ppo_steps, residual_scale=args.residual_scale, eval_episodes=0,
            learning_rate=args.residual_lr, reward_mode=args.reward_mode,
            uncertainty_penalty=args.uncertainty_penalty,
            videos=0, seed=seed, device="cpu", progress=False, **episodes,
            base_policy=str(args.plain_bc) if plain else None,
        ))  # fmt: skip
        final = run["policies"]["bc+ppo"]
        real = _real(args, man, f"{_row_name(args, name)}_{seed}", SavedPolicy(final["path"]))
        per_seed.append(
            {
                "seed": seed,
                **real,
                "ppo_minutes": run["ppo"]["wall_clock_s"] / 60,
                "dream_success_rate": final["dream"]["success_rate"],
                "dream_bc_success_rate": run["policies"]["bc"]["dream"]["success_rate"],
                "dream_return": final["dream"]["mean_return"],
                "dream_bc_return": run["policies"]["bc"]["dream"]["mean_return"],
                # The same starts and flow noise for both, scored by the success estimate
                # and reward named here (an older row's dream_* keys used its own).
                "imagined": _imagined(final["dream"]),
                "imagined_base": _imagined(run["policies"]["bc"]["dream"]),
                "imagined_vs_base": final["vs_bc"],
                "policy": final["path"],
                "success_estimate": run["success_estimate"],
                "reward_mode": run["reward_mode"],
            }
        )
        if save is not None and len(per_seed) < len(args.seeds):
            save({**_pooled(per_seed), "per_seed": per_seed, **recipe})
    return {**_pooled(per_seed), "per_seed": per_seed, **recipe}


def distilled(args: Args, bundle: Path, man: dict[str, Any],
              pcfg: PlannerConfig) -> dict[str, Any]:  # fmt: skip
    """Record the planner in the dream from bank starts, distil it into a residual head on BC."""
    from rla_gym.agents import ActorCritic, BCConfig
    from rla_gym.envs.rla_world import RLAWorldConfig
    from rla_gym.planning import DreamPlanner, MPCController, distill, record_plans

    out = _runs(args, man) / "distilled"
    info_path = out / "distill.json"
    if not info_path.exists():
        t0 = time.perf_counter()
        planner = DreamPlanner(RLAWorldConfig(artifacts=str(bundle)), pcfg)
        n = min(args.distill_starts, len(planner.core.reset_features))
        data = record_plans(MPCController(planner), list(range(n)), seed=args.eval_seed)
        policy = distill(
            data["features"],
            data["chunks"],
            base_policy=ActorCritic.load(bundle / "policy"),
            residual_scale=pcfg.residual_scale,
            bc_config=BCConfig(steps=args.distill_steps, seed=args.eval_seed),
        )
        policy.save(out / "policy")
        save_json({"pairs": len(data["chunks"]), "starts": n,
                   "dream_planner_return": float(data["returns"].mean()),
                   "minutes": (time.perf_counter() - t0) / 60}, info_path)  # fmt: skip
    info = load_json(info_path)
    return {**_real(args, man, "distilled", SavedPolicy(str(out / "policy"))), "distill": info}


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    bundle = resolve_artifacts(args.artifacts, args.suite)
    man = load_json(bundle / "manifest.json")
    out_path = args.out or Path(f"benchmarks/results/rl_in_dream_{SHORT[args.suite]}.json")
    old = load_json(out_path) if out_path.exists() else {}
    # Another bundle's dream: its rows are kept for the record, never beside this bundle's.
    policies, superseded = rows_of_bundle(
        old, man["created_utc"], "policies",
        record=("best", "best_over_bc_points", "provenance", "config"),
    )  # fmt: skip
    pcfg = PlannerConfig(
        samples=args.planner_samples,
        iterations=args.planner_iterations,
        residual_scale=args.planner_residual,
        seed=args.eval_seed,
    )

    def save(name: str, row: dict[str, Any]) -> None:
        policies[_row_name(args, name)] = row
        best = max(
            (p for p in policies if p not in ("bc", "bc-plain")),
            key=lambda p: _rate(policies[p]),
            default=None,
        )
        bc = policies.get("bc")
        gain = None if best is None or bc is None else 100 * (_rate(policies[best]) - _rate(bc))
        # What the dream added: each policy against the base it started from, on exactly the
        # episodes it ran (episodes 0..n-1 per seed; a stopped row ran fewer).
        for p, r in policies.items():
            base = policies.get(r.get("base", "bc"), {}).get("per_episode_success")
            if p != "bc" and base is not None:
                runs = r.get("per_seed") or [r]
                r["base_same_episodes"] = sum(sum(base[: s["episodes"]]) for s in runs)
        over_own = {p: 100 * (r["success"] - r["base_same_episodes"]) / r["episodes"]
                    for p, r in policies.items()
                    if p not in ("bc", "bc-plain") and "base_same_episodes" in r}  # fmt: skip
        save_json({
            "provenance": provenance(seed=args.eval_seed, encoder=man["encoder_fingerprint"],
                                     device="cpu"),
            "task": f"{man['sim']}/{man['task']}", "bundle": str(bundle),
            "bundle_created_utc": man["created_utc"],
            "policies": policies,
            "best_over_bc_points": gain, "best": best, "target_points": 5.0,
            "over_own_base_points": over_own,
            "config": to_jsonable(args),
            "protocol": ("every policy on the same real episodes (LIBERO init states "
                         "0..episodes-1, robosuite seeds eval_seed + i) with the task's horizon; "
                         "bc+ppo pooled over its seeds; Wilson 95 % intervals"),
            **({"superseded": superseded} if superseded else {}),
        }, out_path)  # fmt: skip

    for name in args.policies:
        t0 = time.perf_counter()
        if name == "bc":
            row = {**_real(args, man, "bc", SavedPolicy(str(bundle / "policy"))),
                   "method": (man.get("policy") or {}).get("method") or "bc"}  # fmt: skip
        elif name == "bc-plain":
            if args.plain_bc is None:
                raise ValueError("policy bc-plain needs --plain-bc <policy folder>")
            row = {**_real(args, man, "bc-plain", SavedPolicy(str(args.plain_bc))),
                   "method": "bc", "path": str(args.plain_bc)}  # fmt: skip
        elif name in PPO_ROWS:
            if name.startswith("bc-plain") and args.plain_bc is None:
                raise ValueError(f"policy {name} needs --plain-bc <policy folder>")
            row = bc_ppo(args, bundle, man, name, save=lambda r, n=name: save(n, r))
            name = _row_name(args, name)
        elif name == "planner":
            mode = args.planner_reward_mode
            policy = PlannerPolicy(str(bundle), pcfg, reward_mode=mode)
            if mode is not None:
                name = f"planner {mode}"  # its own row and evaluation log
            row = {
                **_real(args, man, name, policy),
                "planner": dataclasses.asdict(pcfg),
                "reward_mode": policy.env_config().reward_mode,
            }
        elif name == "distilled":
            row = distilled(args, bundle, man, pcfg)
        else:
            raise ValueError(
                f"unknown policy {name!r}; choose from bc, bc-plain, bc+ppo, bc-plain+ppo, "
                "bc+ppo-short, planner, distilled"
            )
        row["wall_minutes"] = (time.perf_counter() - t0) / 60
        save(name, row)
    return load_json(out_path)


if __name__ == "__main__":
    main(tyro.cli(Args))
