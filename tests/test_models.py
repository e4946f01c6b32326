"""One ``"type"`` per checkpoint's ``config.json`` and the loader registry (tiny CPU models)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rla_gym.agents import PPO, ActorCritic, ActorCriticConfig, PPOConfig
from rla_gym.decoder import DecoderConfig, FrameDecoder
from rla_gym.errors import CorruptFileError, MissingWeightsError, ModelTypeError
from rla_gym.models import load_model, model_loaders
from rla_gym.reward.progress import ProgressHead, ProgressHeadConfig
from rla_gym.rla import RLAAutoencoder, RLAConfig
from rla_gym.utils.checkpoint import save_checkpoint
from rla_gym.world_model import (
    BaselineConfig,
    DirectRegressionWM,
    FeatureFlowWM,
    RLAWorldModel,
    load_predictor,
    world_model_preset,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N, D, A = 4, 8, 2
FP = "tiny@000000000000"
ASSETS = Path(__file__).parents[1] / "rla_gym" / "envs" / "assets"


def _rla() -> RLAAutoencoder:
    return RLAAutoencoder(
        RLAConfig(
            feature_dim=D,
            num_tokens=N,
            latent_tokens=2,
            latent_dim=4,
            width=16,
            depth=1,
            heads=2,
            encoder_fingerprint=FP,
        )
    )


def _baseline(cls: type) -> Any:
    return cls(
        BaselineConfig(
            feature_dim=D,
            num_tokens=N,
            action_dim=A,
            max_horizon=4,
            width=16,
            heads=2,
            depth=1,
            flow_depth=1,
            encoder_fingerprint=FP,
        )
    )


def _policy() -> ActorCritic:
    return ActorCritic(
        (N, D),
        A,
        ActorCriticConfig(
            token_dim=8, feature_dim=16, mlp_hidden=(16,), actor_hidden=(16,), critic_hidden=(16,)
        ),
    )


# type -> (tiny model, its own save). PPO's weights are its policy's.
MODELS: dict[str, Callable[[], Any]] = {
    "rla": _rla,
    "rla-wm": lambda: RLAWorldModel(world_model_preset("tiny", A, max_horizon=4), _rla()),
    "direct": lambda: _baseline(DirectRegressionWM),
    "fm": lambda: _baseline(FeatureFlowWM),
    "progress-head": lambda: ProgressHead(
        ProgressHeadConfig(
            feature_dim=D, num_tokens=N, encoder_fingerprint=FP, token_dim=4, hidden=8
        )
    ),
    "frame-decoder": lambda: FrameDecoder(
        DecoderConfig.for_grid(
            (2, 2), 16, feature_dim=D, encoder_fingerprint=FP, width=16, channels=(16, 8)
        )
    ),
    "actor-critic": _policy,
    "ppo": lambda: PPO(None, PPOConfig(), policy=_policy(), device="cpu"),
}


def _save(model: Any, path: Path) -> Path:
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(path)
    else:
        model.save(path)
    return path


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return (model.policy if isinstance(model, PPO) else model).state_dict()


def _edit_config(path: Path, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(edit(cfg)))


def test_every_checkpointed_model_has_a_loader() -> None:
    assert set(model_loaders()) == set(MODELS)


@pytest.mark.parametrize("model_type", list(MODELS))
def test_each_type_round_trips_through_load_model(tmp_path: Path, model_type: str) -> None:
    torch.manual_seed(0)
    model = MODELS[model_type]()
    path = _save(model, tmp_path / model_type)
    assert json.loads((path / "config.json").read_text())["type"] == model_type
    back = load_model(path)
    assert type(back) is type(model)
    for k, v in _weights(model).items():
        torch.testing.assert_close(_weights(back)[k], v)


def test_a_loader_refuses_another_models_checkpoint(tmp_path: Path) -> None:
    head = _save(MODELS["progress-head"](), tmp_path / "head")
    with pytest.raises(ModelTypeError, match="holds a 'progress-head' checkpoint, not 'actor-cr"):
        ActorCritic.load(head)
    with pytest.raises(ModelTypeError, match="not 'rla'"):
        RLAAutoencoder.from_pretrained(head)
    with pytest.raises(ModelTypeError, match="not a world model"):
        load_predictor(head)
    policy = _save(_policy(), tmp_path / "policy")
    with pytest.raises(ModelTypeError, match="not 'ppo'"):
        PPO.load(policy, device="cpu")
    with pytest.raises(ModelTypeError, match="not 'progress-head'"):
        ProgressHead.from_pretrained(policy)
    # A PPO folder holds a policy: ActorCritic.load reads it.
    ppo = _save(MODELS["ppo"](), tmp_path / "ppo")
    assert isinstance(ActorCritic.load(ppo), ActorCritic)


def test_unknown_untyped_or_missing_checkpoints_are_named(tmp_path: Path) -> None:
    path = _save(_rla(), tmp_path / "rla")
    _edit_config(path, lambda c: {**c, "type": "diffusion"})
    with pytest.raises(ModelTypeError, match="'diffusion'; known types: actor-critic, direct, fm"):
        load_model(path)
    _edit_config(path, lambda c: {k: v for k, v in c.items() if k != "type"})
    with pytest.raises(ModelTypeError, match="names no model type"):
        load_model(path)
    (path / "config.json").unlink()
    with pytest.raises(CorruptFileError, match=r"config\.json is missing"):
        load_model(path)
    with pytest.raises(MissingWeightsError):
        load_model(tmp_path / "nothing")


# Checkpoints written before "type": the RLA and the decoder named no type, world models and the
# progress head named it under "model", the policy and PPO under a versioned "format".
LEGACY: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "rla": lambda c: c,
    "frame-decoder": lambda c: c,
    "rla-wm": lambda c: {"model": "rla-wm", **c},
    "fm": lambda c: {"model": "fm", **c},
    "progress-head": lambda c: {"model": "progress-head", **c},
    "actor-critic": lambda c: {"format": "rla_gym.agents.ActorCritic/1", **c},
    "ppo": lambda c: {"format": "rla_gym.agents.PPO/1", **c},
}


@pytest.mark.parametrize("model_type", list(LEGACY))
def test_legacy_configs_still_load(tmp_path: Path, model_type: str) -> None:
    model = MODELS[model_type]()
    path = _save(model, tmp_path / model_type)
    _edit_config(path, lambda c: LEGACY[model_type]({k: v for k, v in c.items() if k != "type"}))
    own = model_loaders()[model_type]
    assert type(own(path, device="cpu")) is type(model)
    if model_type not in ("rla", "frame-decoder"):  # a legacy key still names the type
        assert type(load_model(path)) is type(model)


def test_save_checkpoint_needs_one_consistent_type(tmp_path: Path) -> None:
    plain = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="no model type"):
        save_checkpoint(tmp_path / "a", {}, plain)
    save_checkpoint(tmp_path / "b", {"width": 2}, plain, model_type="linear")
    assert json.loads((tmp_path / "b" / "config.json").read_text()) == {
        "type": "linear",
        "width": 2,
    }
    with pytest.raises(ValueError, match="names type 'rla'"):
        save_checkpoint(tmp_path / "c", {"type": "rla"}, _policy())


@pytest.mark.parametrize("bundle", ["libero", "robosuite-lift", "dmc-reacher"])
def test_shipped_bundle_parts_name_their_type(bundle: str) -> None:
    parts = {
        "world_model": RLAWorldModel,
        "policy": ActorCritic,
        "progress": ProgressHead,
        "decoder": FrameDecoder,
    }
    for part, cls in parts.items():
        path = ASSETS / bundle / part
        assert json.loads((path / "config.json").read_text())["type"] == cls.MODEL_TYPE
        assert type(load_model(path)) is cls
