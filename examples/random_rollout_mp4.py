"""Random actions in the real simulator and in the dream, side by side, in three panels.

The dreamed episode starts from a reset-bank entry whose simulator init state is known (LIBERO:
``init_state_id``); the real simulator is reset to that same init state and receives exactly the
same control steps (each env step's chunk, unflattened to ``(K, A)``). Per env step the video
shows, left to right:

1. the real camera frame;
2. the dreamed features decoded to pixels by the bundle's frame decoder (``render_backend=
   "decoder"``; left out if the bundle ships none);
3. the nearest real frame of the bundle's render bank to the dreamed features
   (``render_backend="nearest"``).

The bar under the frames is the reward-L1 scaled to the episode's range. The script also prints
the feature L1 between dream and the encoded real frame, and the decoded panel's PSNR against the
real frame, per step.

    python examples/random_rollout_mp4.py --artifacts rla_gym/envs/assets/libero --out dream.mp4
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from rla_gym.decoder import psnr
from rla_gym.envs.render import label, panels, resize_nearest, write_mp4
from rla_gym.envs.rla_world import RLAWorldEnv


@dataclass(frozen=True)
class Args:
    artifacts: str | None = None
    """Bundle folder (default: the embedded LIBERO bundle)."""
    steps: int = 16
    """Env steps (chunks of K control steps)."""
    index: int = 0
    """Reset-bank entry to start from."""
    seed: int = 0
    """Seeds the random policy and the flow noise."""
    flow_steps: int = 10
    """Euler steps per prediction."""
    size: int = 160
    """Side of each panel of the video in pixels."""
    out: Path = Path("random_rollout.mp4")


def main(args: Args) -> None:
    torch.set_num_threads(1)
    from rla_gym.features import make_encoder
    from rla_gym.sims.factory import make_sim

    env = RLAWorldEnv(args.artifacts, flow_steps=args.flow_steps, render_mode="rgb_array")
    core = env.core
    decoded = core.render_backend == "decoder"  # the default "auto" picks it when shipped
    if not decoded:
        print(
            "this bundle has no frame decoder: showing real | nearest only "
            "(add one with `rla-gym add-decoder`)"
        )
    man = env.manifest
    k, a_dim = core.chunk, core.action_dim
    _, info = env.reset(seed=args.seed, options={"start": "init", "index": args.index})
    init_id = info["init_state_id"]
    sim = make_sim(
        man["sim"], man["task"], resolution=int(man.get("resolution") or 128), render=True
    )
    encoder = make_encoder(man["encoder"])
    low, high = np.asarray(man["action_low"]), np.asarray(man["action_high"])
    rng = np.random.default_rng(args.seed)

    def frame(real: np.ndarray) -> tuple[np.ndarray, float]:
        s = env.state_features[None]
        views = [real]
        score = float("nan")
        if decoded:
            dec = core.render(s, "decoder")[0]
            real_px = resize_nearest(real, dec.shape[0])
            score = float(
                psnr(torch.from_numpy(dec).float() / 255, torch.from_numpy(real_px).float() / 255)[
                    0
                ]
            )
            views.append(dec)
        views.append(core.render(s, "nearest")[0])
        return panels(views, args.size), score

    try:
        real = sim.reset(seed=args.seed, init_state_id=init_id if init_id >= 0 else None)
        frames = [frame(real.frame)[0]]
        l1s = []
        for i in range(args.steps):
            action = rng.uniform(-1, 1, k * a_dim).astype(np.float32)
            _, reward, _, _, step_info = env.step(action)
            for row in action.reshape(k, a_dim):  # row-major (K, A): control step by step
                real = sim.step((low + (row + 1) / 2 * (high - low)).astype(np.float32))
            real_feats = torch.from_numpy(encoder.encode(real.frame[None])[0])
            gap = float((real_feats - env.state_features.cpu()).abs().mean())
            picture, score = frame(real.frame)
            l1s.append(step_info["reward_l1"])
            print(
                f"step {i:2d}  t={step_info['t']:3d}  reward={reward:+.3f}  "
                f"reward_l1={step_info['reward_l1']:.4f}  dream-vs-real L1={gap:.4f}  "
                f"decoded PSNR={score:.1f} dB  real success={real.success}",
                flush=True,
            )
            frames.append(picture)
    finally:
        sim.close()
    lo, hi = min(l1s), max(l1s)
    bars = [0.0] + [(v - lo) / max(hi - lo, 1e-9) for v in l1s]
    frames = [label(f, b) for f, b in zip(frames, bars, strict=True)]
    print("wrote", write_mp4(frames, args.out, fps=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
