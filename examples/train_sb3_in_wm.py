"""Train a Stable-Baselines3 agent entirely inside the dream, then judge it in the real simulator.

1. ``gym.make_vec("RLAWorld-<suite>-v0", vectorization_mode="vector_entry_point")`` builds the
   native batched dream env: one world-model call advances every env.
2. ``SB3VecEnvAdapter`` presents it as an SB3 ``VecEnv``; ``VecMonitor`` records episode returns.
3. SB3 PPO (or SAC) learns with ``SB3PatchExtractor``, which pools the ``(N, D)`` patch features
   before the policy and value heads (``MlpPolicy`` alone would flatten them into N x D inputs).
4. The model is saved as ``<out>/model.zip``; with ``--eval-episodes`` it then runs in the real
   simulator through ``rla-gym eval`` (render -> encoder -> chunk of K actions), which reports the
   success rate with its Wilson 95 % interval. The same command works afterwards:
   ``rla-gym eval --policy <out>/model.zip --sim <sim> --task <task>``.

    python examples/train_sb3_in_wm.py --artifacts /tmp/bundle_libero --total-timesteps 20000
    python examples/train_sb3_in_wm.py --suite dmc-reacher --algo sac --eval-episodes 10
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import tyro
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import VecMonitor

import rla_gym  # noqa: F401  (registers the RLAWorld-* ids)
from rla_gym.envs.rla_world import resolve_artifacts
from rla_gym.sb3 import SB3VecEnvAdapter, patch_policy_kwargs
from rla_gym.utils import load_json, save_json


@dataclass(frozen=True)
class Args:
    suite: str = "libero"
    """dreamed env RLAWorld-<suite>-v0: libero, robosuite-lift or dmc-reacher"""
    artifacts: str | None = None
    """bundle folder (default: the suite's embedded bundle)"""
    algo: Literal["ppo", "sac"] = "ppo"
    """SB3 algorithm"""
    num_envs: int = 16
    """dreamed envs advanced together by one world-model call"""
    total_timesteps: int = 20_000
    """env steps (one step = one chunk of K control steps), summed over envs"""
    flow_steps: int = 10
    """Euler steps of the world model per env step"""
    features_dim: int = 256
    """size of the pooled patch-feature vector"""
    token_dim: int = 64
    """per-token projection width of the pooler"""
    gamma: float = 0.9
    """discount (the paper's WMRL value; dreamed episodes are 8-20 chunks)"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    n_steps: int = 32
    """PPO: steps per env per rollout"""
    buffer_size: int = 5_000
    """SAC: replay size; 64 x 512 float32 observations take 128 KB each, stored twice"""
    seed: int = 0
    """seed of SB3 and of the dreamed resets"""
    threads: int = 1
    """torch threads"""
    out: Path = Path("runs/sb3_wm")
    """output folder: model.zip, train.json (and eval.json)"""
    eval_episodes: int = 0
    """real-simulator episodes after training (0: skip)"""
    eval_max_steps: int | None = None
    """control-step limit of a real episode (default: the task's evaluation horizon)"""
    eval_workers: int = 2
    """real-simulator processes"""
    video_dir: Path | None = None
    """write the first two real episodes as mp4 here"""


def make_model(args: Args, env: Any) -> PPO | SAC:
    """The SB3 agent, with the patch-feature pooler in front of its heads."""
    common = dict(learning_rate=args.learning_rate, gamma=args.gamma, seed=args.seed, verbose=0,
                  device="cpu")  # fmt: skip
    if args.algo == "ppo":
        batch = args.n_steps * args.num_envs
        return PPO("MlpPolicy", env, n_steps=args.n_steps, batch_size=min(256, batch),
                   n_epochs=4, policy_kwargs=patch_policy_kwargs(
                       args.features_dim, args.token_dim, log_std_init=-0.5), **common)  # fmt: skip
    return SAC("MlpPolicy", env, buffer_size=args.buffer_size, batch_size=128,
               learning_starts=min(1_000, args.total_timesteps // 4),
               policy_kwargs=patch_policy_kwargs(args.features_dim, args.token_dim),
               **common)  # fmt: skip


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    # -- the dream: a native batched env, seen by SB3 as a VecEnv -------------------------------
    venv = gym.make_vec(f"RLAWorld-{args.suite}-v0", num_envs=args.num_envs,
                        vectorization_mode="vector_entry_point", artifacts=args.artifacts,
                        flow_steps=args.flow_steps)  # fmt: skip
    env = VecMonitor(SB3VecEnvAdapter(venv.unwrapped))
    env.seed(args.seed)
    manifest = load_json(resolve_artifacts(args.artifacts, args.suite) / "manifest.json")
    print(f"dream: {args.num_envs} x RLAWorld-{args.suite}-v0, obs "
          f"{env.observation_space.shape}, action {env.action_space.shape} "
          f"(K={manifest['chunk']} x A={manifest['action_dim']})")  # fmt: skip

    # -- training, entirely in the dream ---------------------------------------------------------
    model = make_model(args, env)
    t0 = time.perf_counter()
    model.learn(args.total_timesteps)
    train_s = time.perf_counter() - t0
    returns = [ep["r"] for ep in model.ep_info_buffer]
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.zip")
    env.close()
    summary: dict[str, Any] = {
        "algo": args.algo, "suite": args.suite, "artifacts": args.artifacts,
        "timesteps": int(model.num_timesteps), "train_wall_clock_s": train_s,
        "dream_mean_return_last_100": float(np.mean(returns)) if returns else None,
        "model": str(args.out / "model.zip"),
    }  # fmt: skip
    print(
        f"trained {args.algo} for {model.num_timesteps} dreamed steps in {train_s:.0f} s; "
        f"mean dreamed return (last 100 episodes) {summary['dream_mean_return_last_100']}"
    )

    # -- judgement, in the real simulator --------------------------------------------------------
    if args.eval_episodes:
        from rla_gym.cli.evaluate import EvalArgs, cmd_eval

        cmd_eval(EvalArgs(
            policy=str(args.out / "model.zip"), sim=manifest["sim"], task=manifest["task"],
            encoder=manifest["encoder"], resolution=int(manifest.get("resolution") or 128),
            episodes=args.eval_episodes, max_steps=args.eval_max_steps,
            workers=args.eval_workers, seed=args.seed, out=args.out / "eval.json",
            video_dir=args.video_dir,
        ))  # fmt: skip
        real = load_json(args.out / "eval.json")
        summary["real"] = {k: real[k] for k in ("success_rate", "wilson95", "mean_return",
                                                "mean_length", "episodes")}  # fmt: skip
    save_json(summary, args.out / "train.json")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
