"""The frame decoder's PSNR (`decoder.py`)."""

from __future__ import annotations

from .common import fmt_opt, load_result, stamp


def decoder() -> str:
    d = load_result("decoder.json")
    if d is None:
        return "_not run yet: `python benchmarks/decoder.py`_"
    suites = [k for k in d if k != "provenance"]
    hs = sorted(d[suites[0]]["psnr_imagined"], key=int)
    target = d["provenance"].get("target_psnr_real_db", 20.0)

    def db(x: float | None) -> str:
        return fmt_opt(x, ".1f")

    def per_h(r: dict, key: str) -> str:
        return " / ".join(db(r[key][h]) for h in hs)

    out = [
        "| suite | decoder (int8) | training | PSNR held-out real | PSNR imagined @ "
        + " / ".join(hs)
        + " chunks | decoder on the real features of those frames | "
        "decoded start frame (nothing moves) | nearest-frame render: real; imagined | "
        "foreground L1 on real: decoder / nearest | "
        f"target ≥ {target:.0f} dB on real |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in suites:
        r = d[s]
        dec = r["decoder"]
        met = "met" if r["psnr_real"] >= target else "missed"
        out.append(
            f"| {s} | {r['decoder_mb']:.2f} MB, {dec['parameters'] / 1e6:.2f} M params | "
            f"{dec['training_steps']} steps, {dec['wall_clock_s'] / 60:.1f} min, "
            f"{r['train_frames']} frames | {r['psnr_real']:.1f} ({r['frames_real']} frames) | "
            f"{per_h(r, 'psnr_imagined')} ({' / '.join(str(r['starts'][h]) for h in hs)} "
            f"starts) | {per_h(r, 'psnr_real_at_horizon')} | {per_h(r, 'psnr_copy_start')} | "
            f"{r['psnr_nearest_real']:.1f}; {per_h(r, 'psnr_nearest_imagined')} | "
            f"{r['foreground_l1_real']:.3f} / {r['foreground_l1_nearest_real']:.3f} "
            f"({100 * r['foreground_fraction']:.0f} % of pixels) | {met} |"
        )
    p = d["provenance"]
    eps = ", ".join(f"{s} {len(d[s]['heldout_episodes'])}" for s in suites)
    extra = (
        f"PSNR in dB (mean over frames) of the int8 decoder shipped in each bundle, on the "
        f"held-out episodes of its training split plus fresh test episodes of another "
        f"collection seed, seen by neither the decoder nor the world model ({eps} "
        f"episodes); imagined: the bundle's world model "
        f"dreams from a real frame with the episode's real actions ({p['flow_steps']} Euler "
        f"steps, chunks of {d[suites[0]]['chunk']} control steps) and the decoded dream is "
        f"compared with the real frame those actions led to. Foreground: pixels more than "
        f"0.1 (mean RGB) away from the held-out frames' median, i.e. the moving robot and "
        f"objects, which whole-frame PSNR hardly weighs. "
    )
    return "\n".join([*out, "", extra + stamp(d)])
