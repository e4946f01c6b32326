"""``rla-gym <verb>``: collect, record, encode, inspect, train-rla, train-wm, train-bc,
train-progress, train-decoder, train-body, build-bundle, add-progress-head, add-decoder,
add-body-model, eval.

Each verb takes a frozen dataclass of options; ``rla-gym <verb> --help`` lists them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro

from rla_gym.cli.evaluate import cmd_eval
from rla_gym.data.collect import CollectConfig
from rla_gym.errors import RLAGymError
from rla_gym.evaluation.record import RecordConfig
from rla_gym.pipelines.build_bundle import BuildBundleConfig
from rla_gym.utils.io import load_json

__all__ = ["main"]


@dataclass(frozen=True, kw_only=True)
class EncodeArgs:
    """Cache encoder features for a dataset."""

    data: Path
    """dataset folder"""
    encoder: str = "opennsfw-resnet50-res4"
    """encoder name (see rla_gym.features.ENCODERS)"""
    weights: str | None = None
    """weights path or hub id, for encoders that need one (dinov2-*)"""
    overwrite: bool = False
    """replace cached features made with a different encoder fingerprint"""


@dataclass(frozen=True, kw_only=True)
class InspectArgs:
    """Print a dataset summary and write an mp4 preview."""

    data: Path
    """dataset folder"""
    preview: Path | None = None
    """mp4 to write (default: <data>/preview.mp4); pass --no-video to skip"""
    episodes: int = 4
    """episodes shown side by side in the preview"""
    no_video: bool = False
    """only print the summary"""


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def cmd_collect(cfg: CollectConfig) -> None:
    """Record episodes in a real simulator (resumable; completed episodes survive interrupts)."""
    from rla_gym.data.collect import collect

    _print(collect(cfg))


def cmd_record(cfg: RecordConfig) -> None:
    """Record a feature policy's real episodes (perturbed if asked) as a dataset (resumable)."""
    from rla_gym.evaluation.record import record_policy

    _print(record_policy(cfg))


def cmd_encode(args: EncodeArgs) -> None:
    """Cache encoder features for every episode of a dataset (resumable)."""
    from rla_gym.data.encode import encode_dataset
    from rla_gym.features import make_encoder

    kwargs = {"weights": args.weights} if args.weights else {}
    _print(encode_dataset(args.data, make_encoder(args.encoder, **kwargs), args.overwrite))


def cmd_inspect(args: InspectArgs) -> None:
    """Summarise a dataset and write an mp4 preview of some episodes."""
    from rla_gym.data.inspect import summarize, write_preview

    summary = summarize(args.data)
    if not args.no_video:
        out = args.preview or Path(args.data) / "preview.mp4"
        summary["preview"] = str(write_preview(args.data, out, episodes=args.episodes))
    _print(summary)


def cmd_build_bundle(cfg: BuildBundleConfig) -> None:
    """Build the artifacts bundle a dreamed env loads, from a dataset and a trained world model."""
    from rla_gym.pipelines.build_bundle import build_bundle

    manifest = load_json(build_bundle(cfg) / "manifest.json")
    _print(
        {
            k: manifest[k]
            for k in ("size_bytes", "total_bytes", "quantization", "weights", "success", "proprio")
        }
    )


@dataclass(frozen=True, kw_only=True)
class AddProgressHeadArgs:
    """Ship a trained progress / success head in an existing bundle."""

    bundle: Path
    """bundle folder (e.g. rla_gym/envs/assets/robosuite-lift)"""
    head: Path
    """progress-head checkpoint folder (from rla-gym train-progress: <out>/checkpoint)"""
    dtype: str = "int8"
    """weights storage in the bundle: float32, float16 or int8"""


def cmd_add_progress_head(args: AddProgressHeadArgs) -> None:
    """Add a progress / success head to a bundle (reward_mode="progress"; success estimate)."""
    from rla_gym.pipelines.build_bundle import add_progress_head

    m = add_progress_head(args.bundle, args.head, args.dtype)
    _print({"progress": m["progress"], "total_bytes": m["total_bytes"]})


@dataclass(frozen=True, kw_only=True)
class AddDecoderArgs:
    """Ship a trained frame decoder in an existing bundle (nothing else in it is rebuilt)."""

    bundle: Path
    """bundle folder (e.g. rla_gym/envs/assets/libero)"""
    decoder: Path
    """decoder checkpoint folder (from rla-gym train-decoder: <out>/checkpoint)"""
    dtype: Literal["float32", "float16", "int8"] = "int8"
    """weights storage in the bundle"""
    max_mb: float | None = 10.0
    """refuse a decoder that takes the bundle past this many MB (10^6 bytes)"""


def cmd_add_decoder(args: AddDecoderArgs) -> None:
    """Add (or replace) the frame decoder of a bundle (render_backend="decoder")."""
    from rla_gym.pipelines.build_bundle import add_decoder

    max_bytes = None if args.max_mb is None else int(args.max_mb * 1e6)
    m = add_decoder(args.bundle, args.decoder, args.dtype, max_bytes)
    _print({"decoder": m["decoder"], "total_bytes": m["total_bytes"]})


@dataclass(frozen=True, kw_only=True)
class AddBodyModelArgs:
    """Ship a trained body model in an existing bundle whose world model dreams the body."""

    bundle: Path
    """bundle folder (e.g. rla_gym/envs/assets/dmc-reacher)"""
    model: Path
    """body-model checkpoint folder (from rla-gym train-body: <out>/checkpoint)"""
    dtype: Literal["float32", "float16", "int8"] = "float32"
    """weights storage in the bundle (float32: the body's precision is the point)"""


def cmd_add_body_model(args: AddBodyModelArgs) -> None:
    """Add (or replace) the body model of a bundle: its dream's next body comes from it
    (RLAWorldConfig.body_dynamics)."""
    from rla_gym.pipelines.build_bundle import add_body_model

    m = add_body_model(args.bundle, args.model, args.dtype)
    _print({"body": m["body"], "total_bytes": m["total_bytes"]})


def _verbs() -> dict[str, Any]:
    verbs: dict[str, Any] = {
        "collect": cmd_collect,
        "record": cmd_record,
        "encode": cmd_encode,
        "inspect": cmd_inspect,
        "build-bundle": cmd_build_bundle,
        "add-progress-head": cmd_add_progress_head,
        "add-decoder": cmd_add_decoder,
        "add-body-model": cmd_add_body_model,
        "eval": cmd_eval,
    }
    # Imported unconditionally: a broken import must fail loudly, not silently remove verbs.
    from rla_gym.cli.train import (
        cmd_train_bc,
        cmd_train_body,
        cmd_train_decoder,
        cmd_train_progress,
        cmd_train_rla,
        cmd_train_wm,
    )

    verbs["train-rla"] = cmd_train_rla
    verbs["train-wm"] = cmd_train_wm
    verbs["train-bc"] = cmd_train_bc
    verbs["train-progress"] = cmd_train_progress
    verbs["train-decoder"] = cmd_train_decoder
    verbs["train-body"] = cmd_train_body
    return verbs


def _origin(err: BaseException) -> str:
    """``file:line`` in rla_gym where ``err`` was raised (the innermost project frame)."""
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__) if "rla_gym" in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename[f.filename.rfind('rla_gym') :]}:{f.lineno}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rla-gym`` console script."""
    try:
        tyro.extras.subcommand_cli_from_dict(
            _verbs(), args=argv, prog="rla-gym", config=(tyro.conf.OmitArgPrefixes,)
        )
    except (RLAGymError, ValueError, KeyError) as err:
        if os.environ.get("RLA_GYM_DEBUG"):
            raise
        # Bad input is reported as one readable line (what, where), not a traceback.
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err  # no repr quotes
        print(
            f"rla-gym: error: {type(err).__name__} at {_origin(err)}: {msg} "
            "[RLA_GYM_DEBUG=1 shows the traceback]",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
