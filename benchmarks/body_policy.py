"""Does a policy that reads the robot's body act better in reality? BC with and without it.

Per suite, four policies are behaviour-cloned with one recipe (``rla-gym train-bc``: every
labelled expert episode of the suite's dataset, the same steps, batch and seed): plain BC and BC
+ RLA head (the bundles' base recipe: the expert and noisy episodes' frames as action-free videos,
the RLA taken from the embedded bundle's world model), each once on the features only and once on
the features and the body vector (``--proprio``, :mod:`rla_gym.data.proprio`). All run in the
real simulator from the same starts (LIBERO:
init states ``0..n-1``; elsewhere seeds ``eval_seed + i``) for the task's evaluation horizon
(reacher: the bundle's, as in every reacher benchmark); the one that reads the body is shown the
real body. Reported: successes with Wilson intervals and, per recipe, the paired difference per
episode of the body arm against the features-only arm.
Options are fixed before the run; nothing is tuned on its numbers.

Trained policies (``runs/body_policy/<suite>/<arm>``) and per-episode logs are reused, so a
stopped run resumes; the JSON is written after every arm.

    python benchmarks/body_policy.py                           # reacher, Lift, LIBERO (~45 min)
    python benchmarks/body_policy.py --suites dmc-reacher --episodes 10
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro
from closed_loop import eval_limit

from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.stats import paired_difference

Suite = Literal["dmc-reacher", "robosuite-lift", "libero"]
DATA = {"dmc-reacher": "data/dmc_reacher_easy", "robosuite-lift": "data/robosuite_lift",
        "libero": "data/libero_object_0"}  # fmt: skip
ARMS = {"bc": (False, False), "bc+body": (True, False), "bc+rla": (False, True),
        "bc+rla+body": (True, True)}  # fmt: skip
"""Arm name -> (whether the policy reads the body, whether it trains with the RLA head)."""
PAIRS = (("bc+body", "bc"), ("bc+rla+body", "bc+rla"))
"""(body arm, its features-only twin)."""


@dataclass(frozen=True)
class Args:
    suites: tuple[Suite, ...] = ("dmc-reacher", "robosuite-lift", "libero")
    """suites to run, in this order (each with its embedded bundle's task, camera and encoder)"""
    episodes: int = 50
    """real episodes per arm (the same starts for both)"""
    eval_seed: int = 10000
    """first real reset seed (LIBERO: init states 0..episodes-1)"""
    steps: int = 2000
    """BC optimizer steps (the bundles' bases: 2000)"""
    seed: int = 0
    """seed of the weights and the minibatch order"""
    workers: int = 1
    """real-simulator processes"""
    runs: Path = Path("runs/body_policy")
    """trained policies and per-episode logs (resumable)"""
    out: Path = Path("benchmarks/results/body_policy.json")


def train(suite: str, arm: str, args: Args, man: dict[str, Any]) -> dict[str, Any]:
    """Train (or reuse) one arm's policy; returns its ``meta.json``."""
    from rla_gym.pipelines.world_action import TrainBCConfig, train_bc_from_dataset

    out = args.runs / suite / arm
    if (out / "meta.json").exists() and (out / "model.safetensors").exists():
        return load_json(out / "meta.json")
    body, head = ARMS[arm]
    cfg = TrainBCConfig(data=Path(DATA[suite]), out=out, encoder=man["encoder"],
                        chunk=int(man["chunk"]), steps=args.steps, seed=args.seed,
                        proprio=body, rla_head=head, rla=bundle_rla(suite, args) if head else None,
                        device="cpu")  # fmt: skip
    return train_bc_from_dataset(cfg)


def bundle_rla(suite: str, args: Args) -> Path:
    """The embedded bundle's frozen RLA (inside its world model), saved as a checkpoint once."""
    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.world_model import RLAWorldModel

    out = args.runs / suite / "rla"
    if not (out / "model.safetensors").exists():
        wm = RLAWorldModel.from_pretrained(resolve_artifacts(None, suite) / "world_model")
        wm.rla.save_pretrained(out, meta={"source": f"{suite} bundle's world model"})
    return out


def evaluate(suite: str, arm: str, args: Args, man: dict[str, Any]) -> dict[str, Any]:
    """``args.episodes`` real episodes of one arm (resumable log beside its policy)."""
    from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim
    from rla_gym.features import sha256_file

    folder = args.runs / suite / arm
    cfg = RealEvalConfig.for_bundle(man, episodes=args.episodes, max_steps=eval_limit(man),
                                    workers=args.workers, seed=args.eval_seed)  # fmt: skip
    identity = {"arm": arm, "weights": sha256_file(folder / "model.safetensors")}
    res = evaluate_in_sim(SavedPolicy(str(folder)), cfg, progress=False,
                          resume=folder / "eval.jsonl", identity=identity)  # fmt: skip
    rows = res["rows"]  # sorted by start index
    return {"success": res["successes"], "episodes": res["episodes"],
            "wilson95": res["wilson95"], "return": res["mean_return"],
            "mean_length": res["mean_length"], "wall_s": res["wall_clock_s"],
            "per_episode_success": [bool(r["success"]) for r in rows]}  # fmt: skip


def run_suite(suite: str, args: Args, result: dict[str, Any]) -> None:
    from rla_gym.envs.rla_world import resolve_artifacts

    man = load_json(resolve_artifacts(None, suite) / "manifest.json")
    s = result["suites"].setdefault(suite, {"arms": {}})
    s.update(sim=man["sim"], task=man["task"], data=DATA[suite])
    for arm in ARMS:
        old = s["arms"].get(arm)
        if old is not None and old["real"]["episodes"] == args.episodes:
            continue
        t0 = time.perf_counter()
        meta = train(suite, arm, args, man)
        real = evaluate(suite, arm, args, man)
        s["arms"][arm] = {
            "reads_body": ARMS[arm][0], "rla_head": ARMS[arm][1],
            "proprio_fields": meta.get("proprio_fields", []),
            "labelled_episodes": len(meta["labelled_episodes"]),
            "heldout_action_mse": meta["heldout_action_mse"],
            "train_s": meta["wall_clock_s"], "real": real,
            "wall_s": time.perf_counter() - t0,
        }  # fmt: skip
        print(f"[{suite}] {arm}: real {real['success']}/{real['episodes']}", flush=True)
        s["paired"] = {}
        for new, old_ in PAIRS:  # the body arm against its features-only twin, per episode
            if new in s["arms"] and old_ in s["arms"]:
                a, b = (np.asarray(s["arms"][k]["real"]["per_episode_success"], float)
                        for k in (new, old_))  # fmt: skip
                s["paired"][f"{new} vs {old_}"] = paired_difference(a, b)
        s.pop("paired_body_minus_features", None)
        result["provenance"] = provenance(seed=args.seed, encoder=man["encoder_fingerprint"],
                                          device="cpu", workers=args.workers)  # fmt: skip
        save_json(result, args.out)


def main(args: Args) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    result = load_json(args.out) if args.out.exists() else {}
    result.setdefault("suites", {})
    result["protocol"] = {"episodes": args.episodes, "eval_seed": args.eval_seed,
                          "steps": args.steps, "seed": args.seed}  # fmt: skip
    for suite in args.suites:
        run_suite(suite, args, result)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
