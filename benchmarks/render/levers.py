"""The levers study and the branch fit (`faithfulness_levers.py`, `branch_fit.py`)."""

from __future__ import annotations

from .common import fmt_opt, load_result, stamp


def faithfulness_levers() -> str:
    d = load_result("faithfulness_levers.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/faithfulness_levers.py`_"
    out = [
        "| suite | row (lever) | direction (1 chunk) | magnitude ratio | ranking Spearman | "
        "L1 / copy-last (4 chunks) | RLA ceiling direction | trained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    rla = [
        "| suite | autoencoder (lever) | ceiling direction | ceiling magnitude ratio | "
        "ceiling ranking Spearman | held-out L1 / copy-last | trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for suite, e in d["suites"].items():
        # The dataset most rows trained on; a row on another one names it.
        datas = [r["training"].get("data") for r in e["rows"].values() if r.get("training")]
        data = max(set(datas) - {None}, key=datas.count, default=e["run"]["data"])
        for name, r in e["rows"].items():
            if "1" not in r:  # an autoencoder row: only its ceiling is scored
                c, tr = r["rla_ceiling"], r["training"]
                how = (
                    f"not trained: PCA of {tr['pairs']} training residuals"
                    if r["options"].get("pca_only")
                    else f"{tr['steps']} steps, "
                    f"{(tr.get('train_wall_clock_s') or tr['this_call_s']) / 60:.0f} min"
                )
                rla.append(
                    f"| {suite} | {name} | {c['direction']:.3f} | "
                    f"{c['magnitude_ratio']:.3f} | {c['ranking_spearman']:.2f} | "
                    f"{fmt_opt(tr.get('val_metrics', {}).get('val/l1_vs_copy'))} | {how} |"
                )
                continue
            h1, h4, ceil = r["1"], r.get("4"), r.get("rla_ceiling")
            tr = r.get("training")
            trained = (
                f"bundle built {r.get('bundle_created_utc', '?')[:10]}"
                if tr is None
                else f"{tr['steps']} steps, {(tr.get('train_wall_clock_s') or 0) / 60:.0f} min"
                + ("" if tr.get("data", data) == data else f", on `{tr['data']}`")
            )
            rel = "-" if h4 is None else f"{h4['l1'] / h4['copy_last_l1']:.2f}"
            out.append(
                f"| {suite} | {name} | {h1['direction']:.3f} | "
                f"{h1['magnitude_ratio']:.3f} | {h1['ranking_spearman']:.2f} | {rel} | "
                f"{'-' if ceil is None else format(ceil['direction'], '.2f')} | "
                f"{trained} |"
            )
        run = e["run"]
        dropout = any(n.startswith("rla-wm+dropout") for n in e["rows"])
        notes.append(
            f"{suite}: {run['starts']} restored real starts (cached), data "
            f"`{data}` unless a row names another, trained rows' steps and wall-clock in their "
            "last column" + (f", action dropout {run['dropout']}" if dropout else "")
        )
    if len(rla) > 2:
        out += [
            "",
            "The autoencoder alone, retrained with the bundle's RLA sizes on the same data "
            "(`cw` = `RLAConfig.change_weight`, 0 is the paper's uniform loss; `r` = "
            "`RLAConfig.linear_rank`, a linear path initialised to the residuals' principal "
            "components; `pca r` = that linear code alone, untrained), scored by its ceiling "
            "on the same starts:",
            "",
            *rla,
        ]
    return "\n".join([*out, "", "; ".join(notes) + ". " + stamp(d)])


def branch_fit() -> str:
    d = load_result("branch_fit.json")
    if d is None or not d.get("models"):
        return "_not run yet: `python benchmarks/branch_fit.py`_"
    out = [
        "| model | direction | magnitude ratio | RLA ceiling direction |",
        "|---|---|---|---|",
    ]
    for name, m in d["models"].items():
        out.append(
            f"| {name} | {m['direction']:.3f} | {m['magnitude_ratio']:.3f} | "
            f"{m['rla_ceiling']['direction']:.3f} |"
        )
    pairs = next(iter(d["models"].values()))["pairs"]
    note = (
        f"{d['points']} branch points of `{d['data']}` whose branches are all in the trainers' "
        f"training split ({pairs} sibling pairs); one dreamed chunk from the shared real start "
        "per branch, flow noise shared within a point. "
    )
    return "\n".join([*out, "", note + stamp(d)])
