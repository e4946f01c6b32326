"""``rla-gym eval``: a policy in the real simulator, with the dreamed env's observation pipeline.

The policy is either a saved feature policy, which sees encoder patch features ``(N, D)`` of
the camera frame and returns a chunk of ``K`` actions (an ``ActorCritic.save`` or ``PPO.save``
folder, or a Stable-Baselines3 ``.zip``), the dream planner (``plan``: model-predictive control
in a bundle's dream, the same features in and chunks out), or a scripted kind (``expert``,
``noisy``, ``random``, ``play``), which reads the simulator's privileged state and acts every
control step.

    rla-gym eval --policy runs/ppo/checkpoint --sim libero --episodes 50
    rla-gym eval --policy model.zip --sim dmc --episodes 30 --video-dir videos
    rla-gym eval --policy plan --sim dmc --max-steps 64 --samples 64 --horizon 2
    rla-gym eval --policy plan --sim robosuite --residual-scale 0.1   # around the bundle's BC
    rla-gym eval --policy expert --sim robosuite --episodes 20
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rla_gym.envs.rla_world import RewardMode
from rla_gym.planning.config import PlannerConfig
from rla_gym.utils.checkpoint import load_sb3_model

__all__ = [
    "EvalArgs",
    "SB3FeaturePolicy",
    "SB3SavedPolicy",
    "cmd_eval",
    "default_bundle",
    "load_sb3_model",
    "run_eval",
]


@dataclass(frozen=True, kw_only=True)
class EvalArgs:
    """Evaluate a policy in a real simulator: success rate with its Wilson 95 % interval, mean
    return and length, a JSON report and optional mp4s."""

    policy: str
    """checkpoint folder (ActorCritic.save / PPO.save), Stable-Baselines3 model .zip, plan (the
    dream planner on --bundle), or a scripted kind: expert, noisy, random, play"""
    sim: str = "libero"
    """real simulator: libero, robosuite or dmc"""
    task: str | None = None
    """task (default: the simulator's default task)"""
    episodes: int = 50
    """episodes (LIBERO: fixed init states 0..episodes-1; others: seeds seed+i)"""
    encoder: str = "opennsfw-resnet50-res4"
    """frozen encoder the policy was trained on (feature policies only)"""
    resolution: int = 128
    """camera resolution the policy was trained on (feature policies only)"""
    chunk: int | None = None
    """control steps per policy decision K (default: the policy's action size divided by the
    simulator's); a policy emitting one action holds it for --chunk control steps (trained with
    action_mode="repeat")"""
    max_steps: int | None = None
    """control-step limit per episode (default: the task's evaluation horizon)"""
    noise: float = 0.3
    """action-noise std of the 'noisy' scripted policy (fraction of the half range)"""
    workers: int = 2
    """simulator processes"""
    seed: int = 0
    """base seed of seeded resets (robosuite, dm-control) and scripted-policy noise"""
    out: Path = Path("eval.json")
    """JSON report to write; every finished episode is also appended to
    ``<out>.partial.jsonl`` as it ends (removed once the report is written)"""
    resume: bool = True
    """reuse the finished episodes of an earlier run of the same evaluation (same policy,
    simulator, task, seeds and horizon) from --out and ``<out>.partial.jsonl``, running only the
    missing ones; --no-resume starts over and overwrites both"""
    video_dir: Path | None = None
    """write the first --videos episodes as mp4 here"""
    videos: int = 2
    """episodes to record when --video-dir is given"""
    progress: bool = True
    """show a progress bar"""
    bundle: Path | None = None
    """bundle whose dream --policy plan plans in (default: the embedded bundle of --sim and
    its task)"""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """options of --policy plan"""
    world_model: Path | None = None
    """--policy plan: dream with this world-model checkpoint instead of the bundle's (same
    encoder; the bundle still gives the reward, the base policy and the starts)"""
    reward_mode: RewardMode | None = None
    """--policy plan: the dreamed reward the planner scores candidates by (aligned, goal or
    progress; default: the env's, aligned)"""


# --------------------------------------------------------------------------- saved policies
_SB3_ALGOS = ("PPO", "A2C", "SAC", "TD3", "DDPG")


class SB3FeaturePolicy:
    """A loaded SB3 model as a deterministic feature policy: ``features (N, D)`` -> chunk, or
    ``{"features": (N, D), "proprio": (P,)}`` -> chunk for a model trained on a dream that shows
    the robot's body (``MultiInputPolicy``).

    Args:
        model: the SB3 model.
        who: names it in error messages (e.g. its path).

    Attributes:
        reads_body: whether it reads the body; the real evaluation then shows it the real one
            (:func:`rla_gym.evaluation.real.feature_worker`), as it does the dream planner's.

    Raises:
        ValueError: (on a call) the observation is not of the kind the model was trained on:
            features for a body policy, a body for a features-only one, or a body of another
            size.
    """

    def __init__(self, model: Any, who: str) -> None:
        from rla_gym.envs.body import PROPRIO, space_reads_body

        self.model, self.who = model, who
        self.reads_body = space_reads_body(model.observation_space, f"the SB3 policy {who}")
        space = model.observation_space
        self.body_shape = tuple(space[PROPRIO].shape) if self.reads_body else None

    def __call__(self, observation: Any) -> Any:
        import numpy as np

        from rla_gym.envs.body import FEATURES, PROPRIO

        given = isinstance(observation, dict)
        if given != self.reads_body:
            shown = f"{{'{FEATURES}', '{PROPRIO}'}}" if given else "features only"
            want = "obs_mode='features+proprio'" if self.reads_body else "obs_mode='patch'"
            trained = "the robot's body beside the features" if self.reads_body else "features only"
            raise ValueError(
                f"the SB3 policy {self.who} was trained on {trained} but is shown {shown}; "
                f"evaluate it with {want} (a policy trained on a dreamed body needs the real one)"
            )
        if given and tuple(np.shape(observation[PROPRIO])) != self.body_shape:
            raise ValueError(
                f"the SB3 policy {self.who} reads a body of shape {self.body_shape} but is shown "
                f"one of shape {np.shape(observation[PROPRIO])}: another simulator's robot"
            )
        return self.model.predict(observation, deterministic=True)[0]


@dataclass(frozen=True)
class SB3SavedPolicy:
    """Picklable factory of a saved SB3 model as a deterministic feature policy (one per worker).

    ``SB3SavedPolicy(path)()`` returns an :class:`SB3FeaturePolicy`, the callable
    ``features (N, D) -> chunk (K * A,)`` (``{"features", "proprio"}`` for a model that reads the
    robot's body: its ``reads_body`` tells the real evaluation to show it).
    """

    path: str

    def __call__(self) -> SB3FeaturePolicy:
        import torch

        torch.set_num_threads(1)  # one core per simulator worker
        return SB3FeaturePolicy(load_sb3_model(self.path), self.path)


def _describe_policy(path: Path) -> tuple[Any, tuple[int, ...], int, str]:
    """``(factory, observation shape, flat action size, kind)`` of a saved feature policy."""
    import numpy as np

    from rla_gym.errors import MissingWeightsError

    if not path.exists():
        raise MissingWeightsError(
            f"no policy checkpoint at {path}; pass a folder written by ActorCritic.save or "
            f"PPO.save, an SB3 model .zip, or a scripted kind: expert, noisy, random, play"
        )
    if path.is_file():
        from rla_gym.envs.body import FEATURES, space_reads_body

        model = load_sb3_model(path)
        space = model.observation_space
        if space_reads_body(space, f"the SB3 policy {path}"):
            space = space[FEATURES]  # the real env shows it the body beside these features
        shape = tuple(int(s) for s in space.shape)
        return SB3SavedPolicy(str(path)), shape, int(np.prod(model.action_space.shape)), "sb3"
    from rla_gym.agents import ActorCritic
    from rla_gym.evaluation.real import SavedPolicy

    policy = ActorCritic.load(path)
    return SavedPolicy(str(path)), tuple(policy.observation_shape), policy.action_dim, "rla_gym"


def check_policy_fits(
    observation_shape: tuple[int, ...],
    action_dim: int,
    features_shape: tuple[int, int],
    sim_action_dim: int,
    chunk: int | None,
    where: str,
) -> int:
    """The chunk ``K`` with which a policy fits a simulator's features and actions.

    Raises:
        SpaceMismatchError: other features ``(N, D)``, or an action size that is not ``K * A``
            (a policy of one ``A``-dim action fits any ``chunk``: it is held, as
            ``action_mode="repeat"`` trained it).
    """
    from rla_gym.agents import SpaceMismatchError

    if tuple(observation_shape) != tuple(features_shape):
        raise SpaceMismatchError(
            f"the policy expects observations of shape {tuple(observation_shape)} but {where} "
            f"gives features {tuple(features_shape)}; pass the --encoder and --resolution the "
            f"policy was trained with"
        )
    if action_dim % sim_action_dim:
        raise SpaceMismatchError(
            f"the policy outputs {action_dim} action values, not a chunk K x A of {where}'s "
            f"A={sim_action_dim}-D actions; it was trained for another simulator or task"
        )
    k = action_dim // sim_action_dim
    if chunk is not None and k == 1:
        return chunk  # one action held for `chunk` control steps (action_mode="repeat")
    if chunk is not None and chunk != k:
        raise SpaceMismatchError(
            f"the policy outputs {action_dim} = K x A action values, i.e. K={k} for A="
            f"{sim_action_dim}, not --chunk {chunk}; drop --chunk or pass --chunk {k}"
        )
    return k


# --------------------------------------------------------------------------- the dream planner
def default_bundle(sim: str, task: str) -> Path:
    """The embedded bundle built for ``sim``/``task``.

    Raises:
        ArtifactsNotFoundError: no embedded bundle matches (the message lists those that exist).
    """
    from rla_gym.envs.artifacts import ASSETS_DIR, MANIFEST, ArtifactsNotFoundError

    found = []
    for folder in sorted(ASSETS_DIR.iterdir()):
        if (folder / MANIFEST).exists():
            m = json.loads((folder / MANIFEST).read_text())
            if (m.get("sim"), m.get("task")) == (sim, task):
                return folder
            found.append(f"{m.get('sim')}/{m.get('task')}")
    raise ArtifactsNotFoundError(
        f"no embedded bundle for {sim}/{task} (embedded: {', '.join(found)}); pass --bundle "
        f"<bundle folder> or --task <one of those tasks>"
    )


def _planner_policy(
    args: EvalArgs, sim_action_dim: int, task: str
) -> tuple[Any, int, dict[str, Any]]:
    """``(factory, chunk K, report info)`` of ``--policy plan``, checked against the simulator.

    Raises:
        ArtifactsNotFoundError: no bundle for the simulator's task.
        EncoderMismatchError: the bundle's encoder or resolution is not --encoder / --resolution.
        SpaceMismatchError: other action size, or a --chunk that is not the bundle's.
        ValueError: planner options out of range (e.g. a horizon beyond the episode).
    """
    from rla_gym.agents import SpaceMismatchError
    from rla_gym.envs.artifacts import MANIFEST
    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.errors import EncoderMismatchError
    from rla_gym.planning import DreamPlanner, PlannerPolicy

    bundle = (
        resolve_artifacts(args.bundle, args.sim)
        if args.bundle is not None
        else default_bundle(args.sim, task)
    )
    m = json.loads((bundle / MANIFEST).read_text())
    if (m["sim"], m["task"]) != (args.sim, task):
        warnings.warn(
            f"bundle {bundle} was built for {m['sim']}/{m['task']}, not "
            f"{args.sim}/{task}: the planner's dream is of another task",
            stacklevel=2,
        )
    if (m["encoder"], int(m["resolution"])) != (args.encoder, args.resolution):
        raise EncoderMismatchError(
            f"bundle {bundle} dreams in {m['encoder']} features at {m['resolution']} px but the "
            f"evaluation encodes with {args.encoder} at {args.resolution} px; pass --encoder "
            f"{m['encoder']} --resolution {m['resolution']}"
        )
    k, a = int(m["chunk"]), int(m["action_dim"])
    if a != sim_action_dim:
        raise SpaceMismatchError(
            f"bundle {bundle} acts with A={a}-D actions but "
            f"{args.sim}/{task} takes A={sim_action_dim}"
        )
    if args.chunk is not None and args.chunk != k:
        raise SpaceMismatchError(
            f"bundle {bundle} dreams chunks of K={k} control steps, not "
            f"--chunk {args.chunk}; drop --chunk or pass --chunk {k}"
        )
    # Built once here so that bad options fail in this process, not as worker tracebacks.
    wm = None if args.world_model is None else str(args.world_model)
    policy = PlannerPolicy(str(bundle), args.planner, world_model=wm, reward_mode=args.reward_mode)
    DreamPlanner(policy.env_config(), args.planner)
    info = {"kind": "plan", "bundle": str(bundle), "planner": asdict(args.planner), "chunk": k,
            "world_model": wm, "reward_mode": policy.env_config().reward_mode}  # fmt: skip
    return policy, k, info


# --------------------------------------------------------------------------- resuming
def _digest(path: Path) -> str:
    """sha256 of a policy file, or of every file (name and bytes) of a policy folder."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _episode_log(out: Path, partial: Path, header: dict[str, Any], resume: bool) -> bool:
    """Prepare ``partial`` for an evaluation of ``header`` reported at ``out``; whether the run
    starts fresh. A report at ``out`` of the same evaluation seeds an absent ``partial`` with its
    finished episodes, so that a re-run only runs the missing ones.

    Raises:
        EvaluationMismatchError: ``out`` (or ``partial``) holds another evaluation.
    """
    from rla_gym.evaluation.episode_log import (
        EpisodeLog,
        EvaluationMismatchError,
        check_same_evaluation,
        eval_header,
    )

    if not resume:
        return True
    if out.exists():
        try:
            report = json.loads(out.read_text())
            found = eval_header(report["policy"], report["config"])
        except (ValueError, KeyError, TypeError) as err:
            raise EvaluationMismatchError(
                f"{out} exists and is not an rla-gym eval report; choose another --out or pass "
                f"--no-resume to overwrite it"
            ) from err
        check_same_evaluation(header, found, out)
        if not partial.exists():
            log = EpisodeLog(partial, header)
            try:
                for row in report.get("rows", []):
                    log.append(row)
            finally:
                log.close()
    return False


# --------------------------------------------------------------------------- the verb
def run_eval(args: EvalArgs) -> dict[str, Any]:
    """Evaluate ``args.policy`` and write the JSON report; returns it.

    Every finished episode goes to ``<out>.partial.jsonl`` as it ends; a re-run of the same
    evaluation (``args.resume``) runs only the episodes that neither that log nor an earlier
    report at ``args.out`` holds. An episode whose worker process dies is retried once on a
    fresh worker and otherwise reported under ``not_run``.

    Raises:
        MissingWeightsError: no checkpoint at the path.
        MissingExtraError: the simulator (or SB3) is not installed.
        SpaceMismatchError: the policy's observation or action size does not fit the simulator.
        EvaluationMismatchError: ``args.out`` or its partial log holds another evaluation.
        WorkerError: a simulator worker failed (finished episodes stay in the partial log).
        ValueError: unknown simulator, task or policy kind.
    """
    from rla_gym.evaluation.episode_log import eval_header
    from rla_gym.evaluation.real import RealEvalConfig, feature_worker, run_episodes

    # The scripted kinds' episode worker (privileged state, no encoder), run here through the
    # same resumable, retrying episode runner as feature policies.
    from rla_gym.evaluation.scripted import scripted_worker
    from rla_gym.sims import POLICY_KINDS, make_sim
    from rla_gym.utils import provenance, save_json

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    scripted = args.policy in POLICY_KINDS
    # Validate everything here, in one process: errors inside the simulator workers would arrive
    # as tracebacks. A probe without a renderer checks the extra and the task, and gives A.
    probe = make_sim(args.sim, args.task, resolution=args.resolution, render=False)
    try:
        sim_action_dim, task = int(probe.action_dim), probe.task
    finally:
        probe.close()
    where = f"{args.sim}/{task}"
    # Finished episodes of an interrupted run are logged here and not re-run.
    partial = args.out.with_name(args.out.name + ".partial.jsonl")
    common = dict(sim=args.sim, task=task, resolution=args.resolution, encoder=args.encoder,
                  episodes=args.episodes, max_steps=args.max_steps, workers=args.workers,
                  seed=args.seed, video_dir=args.video_dir, videos=args.videos)  # fmt: skip
    if scripted:
        cfg = RealEvalConfig(chunk=1, **common)  # type: ignore[arg-type]
        policy_info: dict[str, Any] = {"kind": args.policy, "noise": args.noise}
        worker, worker_args = scripted_worker, (args.policy, args.noise, cfg)
    elif args.policy == "plan":
        factory, k, policy_info = _planner_policy(args, sim_action_dim, task)
        cfg = RealEvalConfig(chunk=k, **common)  # type: ignore[arg-type]
        worker, worker_args = feature_worker, (factory, cfg)
    else:
        from rla_gym.features import make_encoder

        factory, obs_shape, action_dim, kind = _describe_policy(Path(args.policy))
        enc = make_encoder(args.encoder)
        gh, gw = enc.grid_shape(args.resolution, args.resolution)
        k = check_policy_fits(obs_shape, action_dim, (gh * gw, int(enc.feature_dim)),
                              sim_action_dim, args.chunk,
                              f"{where} with {args.encoder} at {args.resolution} px")  # fmt: skip
        cfg = RealEvalConfig(chunk=k, **common)  # type: ignore[arg-type]
        policy_info = {"kind": kind, "path": str(args.policy), "observation_shape": obs_shape,
                       "action_dim": action_dim, "chunk": k,
                       "sha256": _digest(Path(args.policy))}  # fmt: skip
        worker, worker_args = feature_worker, (factory, cfg)
    header = eval_header(policy_info, cfg)
    fresh = _episode_log(args.out, partial, header, args.resume)
    desc = f"eval {policy_info['kind']} {args.sim}"
    result = run_episodes(worker, worker_args, cfg, header, desc=desc, progress=args.progress,
                          resume=partial, fresh=fresh)  # fmt: skip
    report = {
        "policy": policy_info,
        **result,
        "provenance": provenance(seed=args.seed, encoder=args.encoder, device="cpu"),
    }
    save_json(report, args.out)
    partial.unlink(missing_ok=True)
    return report


def cmd_eval(args: EvalArgs) -> None:
    """Evaluate a saved or scripted policy in a real simulator (success with Wilson 95 %)."""
    r = run_eval(args)
    lo, hi = r["wilson95"]
    cfg = r["config"]
    if r["resumed"]:
        print(f"resumed: {r['resumed']} finished episode(s) of an earlier run reused from "
              f"{args.out} / its .partial.jsonl (--no-resume runs them again)")  # fmt: skip
    if r["episodes"]:
        print(
            f"{args.policy} on {cfg['sim']}/{cfg['task']}: success {r['successes']}/"
            f"{r['episodes']} = {100 * r['success_rate']:.1f} % (Wilson 95 % [{100 * lo:.1f}, "
            f"{100 * hi:.1f}] %), mean return {r['mean_return']:.3f}, mean length "
            f"{r['mean_length']:.1f} control steps"
            + (f", {r['mean_decision_s']:.2f} s per decision" if "mean_decision_s" in r else "")
        )
    if r["retried"]:
        print(f"retried on a fresh worker after their worker died: episode(s) {r['retried']}")
    if r["not_run"]:
        lost = "; ".join(f"{x['index']} ({x['reason']})" for x in r["not_run"])
        print(f"NOT RUN: {len(r['not_run'])} of {cfg['episodes']} episode(s): {lost}; re-run "
              f"the same command to run only them")  # fmt: skip
    for v in r["videos"]:
        print(f"video: {v}")
    print(f"wrote {args.out}")
