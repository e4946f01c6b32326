"""World action model (paper §7): behaviour cloning that also learns from action-free videos.

Trains two policies on the same few labelled expert episodes of a dataset: plain BC, and BC with
an RLA head whose targets, the frozen RLA latents of ``(s_t, s_{t+K})``, also exist for every
frame of the action-free videos (the other expert and noisy episodes of the train split). Both
get the same network, optimizer steps and labelled minibatches; the RLA head is dropped before
saving. Prints each policy's action error on held-out expert episodes and, with
``--eval-episodes``, its success in the real simulator.

    python examples/world_action_model.py                     # ~3 min on one core
    python examples/world_action_model.py --eval-episodes 10  # + real LIBERO, ~5 min more
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from rla_gym.data import EpisodeStore
from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim
from rla_gym.pipelines.world_action import TrainBCConfig, train_bc_from_dataset


@dataclass(frozen=True)
class Args:
    data: Path = Path("data/libero_object_0")
    """dataset with cached features"""
    rla: Path = Path("runs/rla_residual/checkpoint")
    """frozen RLA checkpoint trained on the dataset's features"""
    encoder: str = "opennsfw-resnet50-res4"
    """encoder of the cached features"""
    labelled: int = 5
    """labelled expert episodes"""
    steps: int = 2000
    """optimizer steps of each policy"""
    seed: int = 0
    """seed of the labelled draw, the weights and the minibatches"""
    out: Path = Path("runs/world_action_model_example")
    """where the two policies are saved"""
    eval_episodes: int = 0
    """real-simulator episodes per policy (0: offline only)"""


def main(args: Args) -> dict:
    results = {}
    for name, head in (("bc", False), ("bc+rla", True)):
        cfg = TrainBCConfig(data=args.data, out=args.out / name, encoder=args.encoder,
                            labelled=args.labelled, rla=args.rla, rla_head=head,
                            steps=args.steps, seed=args.seed, device="cpu")  # fmt: skip
        meta = train_bc_from_dataset(cfg)
        results[name] = {k: meta[k] for k in ("labelled_rows", "video_rows", "heldout_action_mse",
                                              "wall_clock_s")}  # fmt: skip
        if args.eval_episodes:
            man = EpisodeStore(args.data).manifest()
            ev = evaluate_in_sim(SavedPolicy(str(cfg.out)), RealEvalConfig(
                sim=man["sim"], task=man["task"], resolution=man["resolution"],
                encoder=args.encoder, episodes=args.eval_episodes))  # fmt: skip
            results[name]["real_success"] = f"{ev['successes']}/{ev['episodes']}"
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
