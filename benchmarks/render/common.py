"""Shared by every renderer: loading a result JSON and formatting its cells."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parents[1] / "results"


def load_result(name: str) -> dict | None:
    """``benchmarks/results/<name>``, or ``None`` when the benchmark has not run yet."""
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def fmt_opt(x: float | None, spec: str = ".3f") -> str:
    """A number, or ``-`` where a row did not measure it."""
    return "-" if x is None else format(x, spec)


def stamp(d: dict) -> str:
    """The italic provenance line under a table: machine, threads, git sha, time."""
    p = d["provenance"]
    return (
        f"_{p['machine']['cpu']}, {p['machine']['cores']} cores, torch threads "
        f"{p['machine']['torch_threads']}; git `{p['git_sha'][:12]}`, {p['time_utc']}._"
    )


def fmt_verdict(ok: bool | None, gap: float = 0.0, spec: str = ".2f") -> str:
    """``met``, ``missed by <gap>`` or ``not measured``."""
    if ok is None:
        return "not measured"
    return "met" if ok else f"missed by {gap:{spec}}"


def fmt_rho(x: float | None) -> str:
    """A rank correlation, two decimals."""
    return fmt_opt(x, ".2f")


def fmt_rho_ci(x: float | None, ci: list[float] | None) -> str:
    """A rank correlation with its 95 % interval when there is one."""
    return fmt_rho(x) if ci is None else f"{fmt_rho(x)} [{ci[0]:.2f}, {ci[1]:.2f}]"


def fmt_rate(r: dict) -> str:
    """A result row's ``k/n (rate %) [Wilson 95 %] %``."""
    lo, hi = r["wilson95"]
    return (
        f"{r['successes']}/{r['episodes']} ({100 * r['success_rate']:.0f} %) "
        f"[{100 * lo:.0f}, {100 * hi:.0f}] %"
    )


def fmt_wilson(k: int, n: int, lo: float, hi: float) -> str:
    """``k/n (rate %) [lo, hi] %`` from counts and a Wilson interval."""
    return f"{k}/{n} ({100 * k / max(n, 1):.0f} %) [{100 * lo:.0f}, {100 * hi:.0f}] %"


def bundle_notes(d: dict, rows: str) -> tuple[str, str]:
    """An rl_in_dream result's notes on its bundle: ``" Bundle built <date>."`` and the rows
    (``rows``: ``"arms"`` or ``"policies"``) it keeps under ``superseded`` for earlier bundles."""
    built = d.get("bundle_created_utc")
    on = f" Bundle built {built[:10]}." if built else ""
    earlier = [
        f"built {b[:10]}: "
        + ", ".join(f"{k} {r['success']}/{r['episodes']}" for k, r in old[rows].items())
        for b, old in d.get("superseded", {}).items()
    ]
    return on, f" On the earlier bundle ({'; '.join(earlier)})." if earlier else ""


def replaced_reacher_bundle() -> str | None:
    """Build time of the features-only reacher bundle the shipped one (which dreams the body)
    replaced, as ``closed_loop_features.json`` records it; ``None`` before that."""
    runs = (load_result("closed_loop_features.json") or {}).get("suites", {})
    return runs.get("dmc-reacher", {}).get("bundle_created_utc")


def planner_search(planner: dict) -> str:
    """How a planner row searched: from scratch or around the base, and how far ahead."""
    res, h = planner["residual_scale"], planner.get("horizon", 2)
    how = "from scratch" if res == 0 else f"residual {res:g} around the base"
    return how + ("" if h == 2 else f", {h} chunks ahead")  # 2: PlannerConfig's default


def reward_mode_label(row: dict) -> str:
    """A dream or planner row's reward; rows from before the option ran the env's default.

    A row run on another bundle (``artifacts``) names it, by the reward-ranking head whose copy
    of the bundle it is when there is one."""
    mode = row.get("reward_mode", "aligned")
    path = row.get("artifacts")
    if path is None:
        return mode
    ranking = (load_result("reward_ranking.json") or {}).get("suites", {})
    head = next((n for e in ranking.values() for n, src in e.get("sources", {}).items()
                 if src == path), None)  # fmt: skip
    return f"{mode} ({head} head)" if head else f"{mode} (bundle `{path}`)"
