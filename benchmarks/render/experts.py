"""Scripted experts' real success (`expert_success.py`)."""

from __future__ import annotations

from .common import load_result, stamp


def expert_success() -> str:
    d = load_result("expert_success.json")
    if d is None:
        return "_not run yet: `python benchmarks/expert_success.py`_"
    noisy = load_result("noisy_success.json")  # `--policy noisy --out .../noisy_success.json`
    out = ["| simulator | policy | success | Wilson 95 % | episodes |", "|---|---|---|---|---|"]
    for r in d["rows"] + (noisy["rows"] if noisy else []):
        lo, hi = r["wilson95"]
        out.append(
            f"| {r['sim']} | {r['policy']} | {r['successes']}/{r['episodes']} "
            f"({100 * r['success_rate']:.0f} %) | [{100 * lo:.0f}, {100 * hi:.0f}] % | "
            f"{r['episodes']} |"
        )
    return "\n".join([*out, "", d["protocol"] + ". " + stamp(d)])
