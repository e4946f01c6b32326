"""World-model fidelity and the RLA decoder target (`fidelity.py`, `rla_decoder_target.py`)."""

from __future__ import annotations

from .common import load_result, stamp


def fidelity() -> str:
    d = load_result("fidelity.json")
    if d is None:
        return "_not run yet: `python benchmarks/fidelity.py ...`_"
    hs = d["config"]["horizons"]
    lines = [
        "| model | "
        + " | ".join(f"L1 @ {h}" for h in hs)
        + " | "
        + " | ".join(f"cos @ {h}" for h in hs)
        + " | train steps | train time |",
        "|---|" + "---|" * (2 * len(hs) + 2),
    ]
    for name, m in d["models"].items():
        l1, cos = m["metrics"]["l1"], m["metrics"]["cosine"]
        wc, st = m.get("train_wall_clock_s"), m.get("train_steps")
        lines.append(
            f"| {name} | "
            + " | ".join(f"{l1[str(h)]:.4f}" for h in hs)
            + " | "
            + " | ".join(f"{cos[str(h)]:.4f}" for h in hs)
            + " | "
            + f"{st if st is not None else '-'} | "
            + f"{'-' if wc is None else f'{wc / 60:.1f} min'} |"
        )
    c, r = d["config"], d["rla_reconstruction"]
    extra = (
        f"{c['val_episodes']} held-out episodes, {c['starts_per_episode']} start frames each, "
        f"chunks of {c['chunk']} control steps, {c['flow_steps']} Euler steps, seed "
        f"{c['seed']}, device {c['device']}, encoder `{c['encoder_fingerprint']}`. "
        f"Single-step RLA reconstruction at gap {r['gap']}: L1 {r['l1']:.4f}, cosine "
        f"{r['cosine']:.4f}."
    )
    return "\n".join(
        [*lines, "", extra + " " + stamp(d), "", "![fidelity](benchmarks/results/fidelity.png)"]
    )


def rla_decoder_target() -> str:
    d = load_result("rla_decoder_target.json")
    if d is None:
        return "_not run yet: `python benchmarks/rla_decoder_target.py`_"
    out = [
        "| decoder target | val L1 | val MSE | copy-last L1 | L1 / copy | steps | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in d["runs"].items():
        f, m = r["final"], r["meta"]
        kept = " (kept)" if name == d["kept"] else ""
        out.append(
            f"| {name}{kept} | {f['val/l1']:.4f} | {f['val/mse']:.5f} | "
            f"{f['val/copy_l1']:.4f} | {f['val/l1_vs_copy']:.3f} | {f['step']} | "
            f"{m['wall_clock_s'] / 60:.1f} min |"
        )
    n_train = d["runs"][d["kept"]]["meta"]["train_episodes"]
    n_val = d["runs"][d["kept"]]["meta"]["val_episodes"]
    return "\n".join([*out, "", f"{n_train} train / {n_val} held-out episodes. " + stamp(d)])
