"""Does the dream agree with reality in closed loop? Imagined vs real success of feature policies.

Per suite, closed-loop policies of graded real quality, all built from the bundle's base policy
(``<bundle>/policy``): the base itself, the base with seeded Gaussian action noise (std ``0.1``,
``0.3``, ``0.6`` in normalised units, i.e. that fraction of the half range, then clipped), the
base deciding only every other chunk (it repeats its last chunk in between), the base with a
uniform random chunk instead of its own with probability ``0.5``, and uniform random chunks. Each
runs from the same starts in both worlds for the same number of control steps:

* **real**: :func:`~rla_gym.evaluation.real.evaluate_in_sim` (LIBERO init states ``0..n-1``,
  seeds ``seed + i`` elsewhere), the task's control-step limit (reacher: the bundle's horizon,
  as in ``rl_in_dream_reacher.py``), stopping at the first successful control step;
* **imagined**: :func:`~rla_gym.evaluation.dream_vs_real.dream_rollouts` from the encoded first
  frame of real episode ``i`` (reward aligned to the nearest reference demo) for
  ``ceil(limit / K)`` chunks; success = the env's ``is_success_estimate`` at any chunk.

A policy's random draws for episode ``i`` come from seed ``seed + i`` in both worlds, chunk by
chunk, so noise is common to the two (only the features it reacts to differ). The scripted
expert is an open-loop reference row: its real actions (:func:`~rla_gym.evaluation.
real_episodes.real_rollouts`, full horizon) are replayed in the dream; its real episodes also
give the encoded first frames every dreamed episode starts from. It is left out of the Spearman.
Every dream is run again with each of ``--other-estimates`` as the success estimate (the same
features, success read another way: ``other_estimates`` of each suite).

A bundle whose world model dreams the robot's body (``--bundles``) starts every dream from the
real start's body too (the expert's real episode records it); the policies read the features.

Writes ``benchmarks/results/closed_loop.json`` after every policy; a re-run skips finished
entries. Real episodes depend on the policy and the simulator, not on the dream: they are logged
under ``runs/closed_loop/<suite>/policy-<sha of the base's weights>/`` and reused by every bundle
that ships the same base.

    python benchmarks/closed_loop.py --suites dmc-reacher robosuite-lift libero
    python benchmarks/closed_loop.py --suites libero --episodes 20 10 --note "..."
    python benchmarks/closed_loop.py --suites dmc-reacher --bundles dmc-reacher=<body bundle> \
        --out benchmarks/results/closed_loop_body.json
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro
from counterfactual import suite_paths

from rla_gym.evaluation.perturbed import Perturbed
from rla_gym.features import sha256_file
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.stats import spearman, wilson_interval

Suite = Literal["libero", "robosuite-lift", "dmc-reacher"]
SUITES = ("libero", "robosuite-lift", "dmc-reacher")
Estimate = Literal["auto", "progress_head", "goal_distance"]  # RLAWorldConfig.success_estimate
TARGET_GAP, TARGET_RHO = 15.0, 0.8  # points; Spearman over >= 6 closed-loop policies


@dataclass(frozen=True)
class Args:
    suites: tuple[Suite, ...] = ("dmc-reacher", "robosuite-lift", "libero")
    """suites to run, in this order (each its embedded bundle unless ``--bundles`` names one)"""
    bundles: tuple[str, ...] = ()
    """``suite=path``: dream with this bundle instead of the suite's embedded one (e.g. one whose
    world model dreams the robot's body; its dreams then start from the real start's body). Its
    ``policy`` is the base; real episodes are shared with every bundle that ships the same
    policy weights"""
    policies: tuple[str, ...] = ()
    """``suite:name=folder``: further closed-loop policies (saved ``ActorCritic`` folders on the
    bundle's features and chunk, e.g. plain BC from fewer demonstrations), run like the base
    from the same starts in both worlds, with the other policies' episode count"""
    episodes: tuple[int, int] = (50, 20)
    """real (and dreamed) episodes of the base and of every other policy"""
    workers: int = 1
    """real-simulator processes"""
    flow_steps: int = 10
    """Euler steps per dreamed chunk"""
    seed: int = 0
    """real reset seeds and policy noise ``seed + i``; dream flow noise ``seed + i``"""
    success_estimate: Estimate = "auto"
    """what the dreamed env's ``is_success_estimate`` reads (``RLAWorldConfig``)"""
    other_estimates: tuple[Estimate, ...] = ("goal_distance",)
    """further success estimates whose imagined success is also recorded (the same dreams again,
    under ``other_estimates`` of each suite)"""
    note: str | None = None
    """a note stored with every suite run now (e.g. why fewer episodes)"""
    runs: Path = Path("runs/closed_loop")
    """real-episode logs and caches (resumable)"""
    out: Path = Path("benchmarks/results/closed_loop.json")


# --------------------------------------------------------------------------- policies
def policies(bundle: Path, size: int, extra: dict[str, str] | None = None) -> dict[str, Perturbed]:
    """The closed-loop policies, best first by intent; ``base`` is the bundle's base; ``extra``
    (``{name: policy folder}``) go in before ``random``."""
    base = str(bundle / "policy")
    own = {name: Perturbed(path, size) for name, path in (extra or {}).items()}
    return {
        "base": Perturbed(base, size),
        "base+noise0.1": Perturbed(base, size, noise=0.1),
        "base+noise0.3": Perturbed(base, size, noise=0.3),
        "base-every-2nd-chunk": Perturbed(base, size, every=2),
        "base+random-chunk-p0.5": Perturbed(base, size, mix=0.5),
        "base+noise0.6": Perturbed(base, size, noise=0.6),
        **own,
        "random": Perturbed(None, size),
    }


BUILT_IN = tuple(policies(Path("."), 1))


def extra_policies(pairs: tuple[str, ...], suite: str) -> dict[str, str]:
    """``("suite:name=folder", ...)`` of ``--policies`` -> this suite's ``{name: folder}``."""
    out = {}
    for p in pairs:
        where, sep, path = p.partition("=")
        s, colon, name = where.partition(":")
        if not (sep and colon and name and path) or s not in SUITES:
            raise SystemExit(f"--policies takes suite:name=folder with suite one of {SUITES}, "
                             f"got {p!r}")  # fmt: skip
        if name in BUILT_IN or name == "expert":
            raise SystemExit(f"--policies: {name!r} is a built-in policy's name; choose another")
        if not (Path(path) / "model.safetensors").exists():
            raise SystemExit(f"--policies {p!r}: no saved policy (model.safetensors) in {path}")
        if s == suite:
            out[name] = path
    return out


# --------------------------------------------------------------------------- one suite
class SuiteRun:
    """One suite's bundle, real evaluation settings and dreamed envs."""

    def __init__(self, suite: str, args: Args) -> None:
        from rla_gym.envs.artifacts import dreamed_body_fields
        from rla_gym.envs.rla_world import resolve_artifacts
        from rla_gym.evaluation.real import RealEvalConfig
        from rla_gym.sims.factory import make_sim

        self.suite, self.args = suite, args
        self.bundle = resolve_artifacts(suite_paths(args.bundles, "bundles").get(suite), suite)
        self.man = load_json(self.bundle / "manifest.json")
        self.chunk = int(self.man["chunk"])
        limit = eval_limit(self.man)
        self.cfg = RealEvalConfig.for_bundle(
            self.man, workers=args.workers, seed=args.seed, max_steps=limit
        )
        if limit is None:
            limit = self.man.get("task_max_steps")  # recorded by bundles built since 2026-12-07
        if limit is None:  # an older bundle: ask the simulator
            sim = make_sim(self.man["sim"], self.man["task"], int(self.man["resolution"]))
            limit = int(sim.max_steps)
            sim.close()
        self.control_steps = limit
        self.chunks = math.ceil(limit / self.chunk)
        # Real episodes are the base's and the simulator's, whatever the bundle dreams with.
        self.policy_sha = sha256_file(self.bundle / "policy" / "model.safetensors")
        self.dir = args.runs / suite / f"policy-{self.policy_sha[:12]}"
        self.body = bool(dreamed_body_fields(self.bundle))
        self.venvs: dict[tuple[int, str], Any] = {}
        self.starts: np.ndarray | None = None
        self.start_bodies: np.ndarray | None = None

    def venv(self, n: int, estimate: str | None = None) -> Any:
        from rla_gym.envs.config import RLAWorldConfig
        from rla_gym.envs.vector import RLAWorldVectorEnv

        key = (n, estimate or self.args.success_estimate)
        if key not in self.venvs:
            cfg = RLAWorldConfig(
                artifacts=str(self.bundle),
                device="cpu",
                flow_steps=self.args.flow_steps,
                max_episode_steps=self.chunks,
                success_estimate=key[1],
            )
            self.venvs[key] = RLAWorldVectorEnv(n, config=cfg)
        return self.venvs[key]

    def estimate_read(self, est: str | None = None) -> str:
        """What ``est`` (default ``--success-estimate``) reads on this bundle (``auto``
        resolved: the env's default estimate there)."""
        from rla_gym.envs.artifacts import load_artifacts
        from rla_gym.envs.core import auto_success_estimate

        est = est or self.args.success_estimate
        return auto_success_estimate(load_artifacts(self.bundle)) if est == "auto" else est

    def expert(self, n: int) -> dict[str, Any]:
        """The scripted expert's real episodes from starts ``0..n-1`` (full horizon, actions and
        encoded frames kept); sets :attr:`starts` to their encoded first frames."""
        from rla_gym.evaluation.real_episodes import PolicySpec, RealJob, real_rollouts

        man = self.man
        job = RealJob(man["sim"], man["task"], int(man["resolution"]), man["encoder"],
                      self.chunk, self.chunks, self.args.seed)  # fmt: skip
        spec = PolicySpec("expert", "expert")
        real = real_rollouts(job, [spec], list(range(n)), self.args.workers,
                             self.dir / "expert", progress=False)  # fmt: skip
        eps = [real[("expert", i)] for i in range(n)]
        self.starts = np.stack([e["features"][0] for e in eps]).astype(np.float32)
        self.start_bodies = np.stack([e["body"][0] for e in eps]).astype(np.float32)
        return {
            "actions": np.stack([e["actions"] for e in eps]).astype(np.float32),
            "success": np.array([bool(e["chunk_success"].any()) for e in eps]),
            "first": first_chunk(np.stack([e["chunk_success"] for e in eps])),
            "return": float(np.mean([float(e["sim_return"]) for e in eps])),
            "run_s": float(sum(float(e["seconds"]) for e in eps if not e["cached"])),
        }

    def real(self, name: str, spec: Perturbed, n: int) -> dict[str, Any]:
        from dataclasses import replace

        from rla_gym.evaluation.real import evaluate_in_sim

        # A saved policy is its weights, wherever its folder lies.
        weights = None if spec.path is None else sha256_file(Path(spec.path) / "model.safetensors")
        identity = {"policy": name, "spec": {**asdict(spec), "path": spec.path and "<weights>"},
                    "policy_sha256": weights}  # fmt: skip
        res = evaluate_in_sim(spec, replace(self.cfg, episodes=n), progress=False,
                              resume=self.dir / f"{name}.jsonl", identity=identity)  # fmt: skip
        rows = res["rows"]  # sorted by start index
        return {
            "success": np.array([bool(r["success"]) for r in rows]),
            # The chunk of the first success (0: the start was already solved, as in reacher).
            "first": [math.ceil(r["length"] / self.chunk) if r["success"] else -1 for r in rows],
            "return": res["mean_return"],
            "mean_length": res["mean_length"],
            "run_s": res["wall_clock_s"],
        }

    def dream(
        self,
        n: int,
        spec: Perturbed | None = None,
        actions: Any = None,
        estimate: str | None = None,
    ) -> dict[str, Any]:
        from rla_gym.evaluation.dream_vs_real import dream_rollouts

        assert self.starts is not None and len(self.starts) >= n
        seed, policy = self.args.seed, None
        if spec is not None:
            policy = spec()
            policy.reset([seed + i for i in range(n)])
        body = None
        if self.body:
            assert self.start_bodies is not None
            body = self.start_bodies[:n]
        out = dream_rollouts(self.venv(n, estimate), policy=policy, actions=actions, seed=seed,
                             features=self.starts[:n], proprio=body)  # fmt: skip
        hit = out["success"]
        return {"success": hit.any(1), "returns": out["rewards"].sum(1), "first": first_chunk(hit)}


def eval_limit(man: dict[str, Any]) -> int | None:
    """The control-step limit of a bundle's real episodes (``None``: the task's own). Reacher's
    own limit (dm-control's 1000 steps) is no evaluation horizon: its real episodes are the
    bundle's horizon, as in every reacher benchmark (also read by ``body_policy.py``)."""
    if man["sim"] == "dmc":
        return int(man["max_episode_steps"]) * int(man["chunk"])
    return None


def first_chunk(hit: np.ndarray) -> list[int]:
    """Per episode of ``hit (B, E)`` (success per chunk): the 1-based chunk of the first success,
    ``-1`` if none."""
    return [int(h.argmax()) + 1 if h.any() else -1 for h in np.asarray(hit, bool)]


def rate(success: np.ndarray, **extra: Any) -> dict[str, Any]:
    k, n = int(np.sum(success)), len(success)
    return {"success": k, "episodes": n, "rate": k / n,
            "wilson95": list(wilson_interval(k, n)), **extra,
            "per_episode_success": [bool(s) for s in success]}  # fmt: skip


def entry(kind: str, imagined: dict[str, Any], real: dict[str, Any], t0: float,
          **extra: Any) -> dict[str, Any]:  # fmt: skip
    im = rate(imagined["success"], **{"return": float(np.mean(imagined["returns"]))},
              first_success_chunk=imagined["first"])  # fmt: skip
    re = rate(real["success"], sim_return=real["return"], first_success_chunk=real["first"])
    agree = float(np.mean(np.asarray(imagined["success"]) == np.asarray(real["success"])))
    return {"kind": kind, **extra, "imagined": im, "real": re,
            "gap_points": 100 * (im["rate"] - re["rate"]), "episode_agreement": agree,
            "real_run_s": real["run_s"], "wall_s": time.perf_counter() - t0}  # fmt: skip


def agreement(s: dict[str, Any], imagined: dict[str, float]) -> dict[str, Any]:
    """Spearman(imagined, real success rate) over the closed-loop policies and the base's gap,
    for imagined success rates ``{policy: rate}``."""
    rows = [k for k, p in s["policies"].items() if p["kind"] == "closed-loop"]
    re = {k: s["policies"][k]["real"]["rate"] for k in rows}
    rho = spearman([imagined[k] for k in rows], [re[k] for k in rows]) if len(rows) >= 3 else None
    base = s["base"]
    gap = 100 * (imagined[base] - re[base]) if base in re else None
    return {"spearman_success": rho, "base_gap_points": gap}


def summarise(s: dict[str, Any]) -> None:
    """The suite's Spearman over closed-loop policies, the base's gap and the verdicts."""
    rows = {k: p for k, p in s["policies"].items() if p["kind"] == "closed-loop"}
    re = [p["real"]["rate"] for p in rows.values()]
    s["closed_loop_policies"] = len(rows)
    s.update(agreement(s, {k: p["imagined"]["rate"] for k, p in s["policies"].items()}))
    s["spearman_return_vs_real_success"] = (
        spearman([p["imagined"]["return"] for p in rows.values()], re) if len(rows) >= 3 else None
    )
    s["wall_s"] = sum(p["wall_s"] for p in s["policies"].values())
    rho, gap = s["spearman_success"], s["base_gap_points"]
    s["targets"] = {
        "base_gap_within_points": TARGET_GAP,
        "base_gap_met": None if gap is None else abs(gap) <= TARGET_GAP,
        "spearman_min": TARGET_RHO,
        "spearman_met": None if len(rows) < 6 else (rho is not None and rho >= TARGET_RHO),
    }


def write(result: dict[str, Any], suite: str, out: Path) -> None:
    """Save ``result`` with only ``suite`` taken from this run: the other suites are re-read from
    ``out``, so runs of different suites into one file (one per core) do not undo each other."""
    if out.exists():
        on_disk = load_json(out)
        result["suites"] = {**on_disk.get("suites", {}), suite: result["suites"][suite]}
    save_json(result, out)


def run_suite(suite: str, args: Args, result: dict[str, Any]) -> None:
    run = SuiteRun(suite, args)
    n_base, n_other = args.episodes
    extra = extra_policies(args.policies, suite)
    specs = policies(run.bundle, run.chunk * int(run.man["action_dim"]), extra)
    old = result["suites"].get(suite, {})
    if (old.get("bundle_created_utc"), old.get("success_estimate", "auto")) != (
        run.man["created_utc"], args.success_estimate):  # fmt: skip
        old = {}  # another bundle's (or estimate's) rows are not this one's
    s: dict[str, Any] = {
        **old, "sim": run.man["sim"], "task": run.man["task"], "chunk": run.chunk,
        "control_steps": run.control_steps, "chunks": run.chunks, "base": "base",
        "bundle_chunks": int(run.man["max_episode_steps"]),
        "bundle_created_utc": run.man["created_utc"], "flow_steps": args.flow_steps,
        "bundle": str(run.bundle) if args.bundles else "embedded",
        "body": run.man.get("proprio") if run.body else None, "estimate_read": run.estimate_read(),
        "auto_estimate": run.estimate_read("auto"),
        "success_estimate": args.success_estimate,
        "policies": dict(old.get("policies", {})),
    }  # fmt: skip
    if args.note is not None:
        s["note"] = args.note
    result["suites"][suite] = s

    def save(name: str, row: dict[str, Any]) -> None:
        s["policies"][name] = row
        summarise(s)
        result["provenance"] = provenance(seed=args.seed, encoder=run.man["encoder_fingerprint"],
                                          device="cpu", workers=args.workers)  # fmt: skip
        write(result, suite, args.out)
        im, re = row["imagined"], row["real"]
        msg = f"imagined {im['success']}/{im['episodes']}, real {re['success']}/{re['episodes']}"
        print(f"[{suite}] {name}: {msg} ({row['wall_s']:.0f} s)", flush=True)

    def done(name: str, n: int) -> bool:
        p = s["policies"].get(name)
        return p is not None and p["real"]["episodes"] == n == p["imagined"]["episodes"]

    todo = [k for k in specs if not done(k, n_base if k == "base" else n_other)]
    others = {e: {} for e in args.other_estimates if e != args.success_estimate}
    if todo or not done("expert", n_base) or set(others) - set(s.get("other_estimates", {})):
        t0 = time.perf_counter()
        ex = run.expert(n_base)  # also the dreamed starts
        if not done("expert", n_base):
            dream = run.dream(n_base, actions=ex["actions"])
            save("expert", entry("open-loop reference", dream, ex, t0, scripted=True))
    for name in todo:
        t0 = time.perf_counter()
        n = n_base if name == "base" else n_other
        real = run.real(name, specs[name], n)
        dream = run.dream(n, spec=specs[name])
        path = specs[name].path and extra.get(name, "<bundle>/policy")
        spec = {**asdict(specs[name]), "path": path}
        save(name, entry("closed-loop", dream, real, t0, spec=spec,
                         mean_length=real["mean_length"]))  # fmt: skip
    # Rows of policies no longer in the list are dropped; the order is the list's.
    s["policies"] = {k: s["policies"][k] for k in ("expert", *specs) if k in s["policies"]}
    summarise(s)
    if todo or set(others) - set(s.get("other_estimates", {})):
        for est, got in others.items():  # the same dreams, success read another way
            for name, p in s["policies"].items():
                n = p["imagined"]["episodes"]
                d = run.dream(n, specs.get(name), ex["actions"][:n] if name == "expert" else None,
                              estimate=est)  # fmt: skip
                got[name] = rate(d["success"], first_success_chunk=d["first"])
            rates = {k: r["rate"] for k, r in got.items()}
            others[est] = {**agreement(s, rates), "imagined": got}
        s["other_estimates"] = others
    write(result, suite, args.out)
    for v in run.venvs.values():
        v.close()


def main(args: Args) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    result = load_json(args.out) if args.out.exists() else {}
    result.setdefault("suites", {})
    for suite in args.suites:
        run_suite(suite, args, result)
        s = result["suites"][suite]
        gap = s["base_gap_points"]
        print(f"[{suite}] spearman {s['spearman_success']}, base gap {gap:+.0f} points, "
              f"{s['wall_s'] / 60:.1f} min", flush=True)  # fmt: skip
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
