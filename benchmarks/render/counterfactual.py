"""Counterfactual action-faithfulness (`counterfactual.py`)."""

from __future__ import annotations

from .common import fmt_opt, fmt_rho, fmt_verdict, load_result, stamp


def counterfactual() -> str:
    d = load_result("counterfactual.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/counterfactual.py`_"
    t = d["targets"]
    lo_r, hi_r = t["magnitude_ratio_range"]
    ha, hl = t["agreement_horizon"], t["l1_horizon"]
    order = ["libero", "robosuite-lift", "dmc-reacher"]
    suites = sorted(d["suites"], key=lambda s: order.index(s) if s in order else len(order))

    def pm(m: dict, key: str) -> str:
        se = m.get(f"{key}_se")
        return fmt_opt(m[key], ".2f") + ("" if se is None or m[key] is None else f" ± {se:.2f}")

    out = [
        "| suite | model | chunks | direction | magnitude ratio | ranking Spearman | L1 | "
        "copy-last L1 | L1 / copy-last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    checks: dict[str, list[str]] = {}
    costs = []
    for suite in suites:
        e = d["suites"][suite]
        for model, per_h in e.items():
            if model == "run":
                continue
            for h, m in per_h.items():
                label = f"{model}: RLA ceiling" if h == "rla_ceiling" else model
                chunks = m.get("horizon", "1") if h == "rla_ceiling" else h
                out.append(
                    f"| {suite} | {label} | {chunks} | {pm(m, 'direction')} | "
                    f"{pm(m, 'magnitude_ratio')} | {pm(m, 'ranking_spearman')} | "
                    f"{m['l1']:.4f} | {m['copy_last_l1']:.4f} | "
                    f"{m['l1'] / m['copy_last_l1']:.2f} |"
                )
        wm, direct = e.get("rla-wm", {}), e.get("direct")
        a, b = wm.get(ha), wm.get(hl)
        dirn = a and a["direction"]
        ratio = a and a["magnitude_ratio"]
        rho = a and a["ranking_spearman"]
        rel = b["l1"] / b["copy_last_l1"] if b else None
        checks[suite] = [
            f"{fmt_opt(dirn, '.2f')}: "
            + fmt_verdict(
                None if dirn is None else dirn >= t["direction_min"],
                t["direction_min"] - (dirn or 0),
            ),
            f"{fmt_opt(ratio, '.2f')}: "
            + fmt_verdict(
                None if ratio is None else lo_r <= ratio <= hi_r,
                max(lo_r - (ratio or 0), (ratio or 0) - hi_r),
            ),
            f"{fmt_rho(rho)}: "
            + fmt_verdict(
                None if rho is None else rho >= t["ranking_spearman_min"],
                t["ranking_spearman_min"] - (rho or 0),
            ),
            f"{fmt_opt(rel, '.2f')}×: "
            + fmt_verdict(
                None if rel is None else rel <= t["l1_over_copy_last_max"],
                (rel or 0) - t["l1_over_copy_last_max"],
            ),
            (
                "no direct-regression checkpoint"
                if direct is None or b is None
                else f"{b['l1']:.4f} vs {direct[hl]['l1']:.4f}: "
                + fmt_verdict(b["l1"] <= direct[hl]["l1"], b["l1"] - direct[hl]["l1"], ".4f")
            ),
        ]
        run = e["run"]
        cpu = run.get("cpu_s")
        costs.append(
            f"{suite} {run['wall_clock_s']['total'] / 60:.1f} min"
            + ("" if cpu is None else f" ({cpu / 60:.1f} CPU-min)")
        )
    rows = [
        f"direction at {ha} chunk ≥ {t['direction_min']}",
        f"magnitude ratio at {ha} chunk in [{lo_r}, {hi_r}]",
        f"ranking Spearman at {ha} chunk ≥ {t['ranking_spearman_min']}",
        f"L1 at {hl} chunks ≤ {t['l1_over_copy_last_max']}× copy-last",
        f"L1 at {hl} chunks ≤ direct regression's",
    ]
    tgt = ["| target (RLA-WM) | " + " | ".join(suites) + " |", "|---" * (len(suites) + 1) + "|"]
    for i, name in enumerate(rows):
        tgt.append(f"| {name} | " + " | ".join(checks[s][i] for s in suites) + " |")
    run = d["suites"][suites[0]]["run"]
    c = run["config"]
    extra = (
        f"Per suite: {c['states']} real starts at chunk boundaries inside the dreamed "
        f"horizon, from {c['episodes']} held-out episodes (expert and noisy, reset seeds "
        f"{c['collection_seed']}+); {len(run['outcomes'])} action sequences from each "
        f"({', '.join(run['outcomes'])}); chunks of {run['chunk']} control steps; "
        f"± = standard error over starts; {c['flow_steps']} Euler steps, the outcomes of "
        f"one start share the flow noise; encoder `{run['encoder_fingerprint']}`; seed "
        f"{c['seed']}. No suite has a direct-regression checkpoint unless listed in the "
        f"table. Bundles measured (built): "
        + "; ".join(
            f"{s} {d['suites'][s]['run'].get('bundle_created_utc', '?')[:10]}" for s in suites
        )
        + f". Wall-clock with other jobs on the two cores: {'; '.join(costs)}. "
        + stamp(d)
    )
    return "\n".join([*out, "", *tgt, "", *_direction_by_pair(d["suites"], suites), extra])


def _direction_by_pair(results: dict, suites: list[str]) -> list[str]:
    """One-chunk direction of every model per pair of action sequences (counterfactual.json
    written before the breakdown existed has none: nothing is rendered)."""
    rows, pairs = [], None
    for suite in suites:
        for model, per_h in results[suite].items():
            if model == "run":
                continue
            for h, m in per_h.items():
                if h not in ("1", "rla_ceiling") or "direction_by_pair" not in m:
                    continue
                by_pair, dist = m["direction_by_pair"], m["real_distance_by_pair"]
                pairs = pairs or list(by_pair)
                label = f"{model}: RLA ceiling" if h == "rla_ceiling" else model
                rows.append(
                    f"| {suite} | {label} | "
                    + " | ".join(f"{fmt_opt(by_pair[p], '.2f')} ({dist[p]:.1f})" for p in pairs)
                    + " |"
                )
    if not rows:
        return []

    def short(pair: str) -> str:
        short = pair.replace("recorded+noise", "rec+").replace("recorded", "rec")
        return short.replace("~", " vs ")

    head = "| suite | model | " + " | ".join(short(p) for p in pairs) + " |"
    return [
        "Direction at one chunk by pair of action sequences (`rec`: the recorded actions, "
        "`rec+0.1`: plus Gaussian noise 0.1; in brackets the mean real feature distance between "
        "the pair's outcomes):",
        "",
        head,
        "|---|---" + "|---" * len(pairs) + "|",
        *rows,
        "",
    ]
