"""Random actions in the dreamed env and the same actions in the real simulator, side by side.

The dreamed episode starts from a reset-bank entry whose simulator init state is known (LIBERO:
``init_state_id``); the real simulator is reset to that same init state and receives exactly the
same control steps (each env step's chunk, unflattened to ``(K, A)``). The video shows, per env
step, the nearest real frame retrieved for the dreamed features (left) and the real camera frame
(right); the bar under the left frame is the reward-L1 scaled to the episode's range. The script
also prints the feature L1 between dream and the encoded real frame per step.

    python examples/random_rollout_mp4.py --artifacts rla_gym/envs/assets/libero --out dream.mp4
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from rla_gym.envs.render import label, side_by_side, write_mp4
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
    """Side of each half of the video in pixels."""
    out: Path = Path("random_rollout.mp4")


def main(args: Args) -> None:
    torch.set_num_threads(1)
    from rla_gym.features import make_encoder
    from rla_gym.sims.factory import make_sim

    env = RLAWorldEnv(args.artifacts, flow_steps=args.flow_steps, render_mode="rgb_array")
    man = env.manifest
    k, a_dim = env.core.chunk, env.core.action_dim
    _, info = env.reset(seed=args.seed, options={"start": "init", "index": args.index})
    init_id = info["init_state_id"]
    sim = make_sim(man["sim"], man["task"], resolution=int(man.get("resolution") or 128),
                   render=True)
    encoder = make_encoder(man["encoder"])
    low, high = np.asarray(man["action_low"]), np.asarray(man["action_high"])
    rng = np.random.default_rng(args.seed)
    try:
        real = sim.reset(seed=args.seed, init_state_id=init_id if init_id >= 0 else None)
        frames = [side_by_side(env.render(), real.frame, args.size)]
        l1s = []
        for i in range(args.steps):
            action = rng.uniform(-1, 1, k * a_dim).astype(np.float32)
            _, reward, _, _, step_info = env.step(action)
            for row in action.reshape(k, a_dim):  # row-major (K, A): control step by step
                real = sim.step((low + (row + 1) / 2 * (high - low)).astype(np.float32))
            real_feats = torch.from_numpy(encoder.encode(real.frame[None])[0])
            dream_feats = env.state_features.cpu()
            gap = float((real_feats - dream_feats).abs().mean())
            l1s.append(step_info["reward_l1"])
            print(f"step {i:2d}  t={step_info['t']:3d}  reward={reward:+.3f}  "
                  f"reward_l1={step_info['reward_l1']:.4f}  dream-vs-real L1={gap:.4f}  "
                  f"real success={real.success}", flush=True)
            frames.append(side_by_side(env.render(), real.frame, args.size))
    finally:
        sim.close()
    lo, hi = min(l1s), max(l1s)
    bars = [0.0] + [(v - lo) / max(hi - lo, 1e-9) for v in l1s]
    frames = [label(f, b) for f, b in zip(frames, bars, strict=True)]
    print("wrote", write_mp4(frames, args.out, fps=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
