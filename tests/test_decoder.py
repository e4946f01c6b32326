"""Frame decoder: shapes, training on tiny real pairs, exact resume, mismatch errors, env render."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rla_gym.cli.main import main
from rla_gym.decoder import DecoderConfig, FrameDecoder
from rla_gym.decoder.train import TrainDecoderConfig, train_decoder
from rla_gym.envs.artifacts import ArtifactsNotFoundError, load_artifacts
from rla_gym.envs.rla_world import RLAWorldEnv
from rla_gym.errors import CorruptFileError, EncoderMismatchError
from rla_gym.pipelines.build_bundle import add_decoder
from rla_gym.utils.training import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = DecoderConfig(width=32, channels=(32, 16, 16), groups=8)


def _train_cfg(data: Path, out: Path, **trainer: object) -> TrainDecoderConfig:
    base = dict(
        steps=30,
        batch_size=8,
        learning_rate=3e-3,
        val_every=10_000,
        ckpt_every=10_000,
        log_every=5,
        progress=False,
        tensorboard=False,
        device="cpu",
    )
    return TrainDecoderConfig(
        data=str(data),
        encoder="tiny",
        out=str(out),
        decoder=SMALL,
        val_fraction=0.3,
        trainer=TrainerConfig(**{**base, **trainer}),
    )


@pytest.fixture(scope="module")
def trained(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small decoder trained on the tiny bundle's own dataset (2x2 tokens -> 32 px)."""
    out = tmp_path_factory.mktemp("decoder")
    result = train_decoder(_train_cfg(bundle.parent / "data", out))
    assert result.checkpoint is not None
    return result.checkpoint


def test_default_decoder_shapes_and_size() -> None:
    model = FrameDecoder(DecoderConfig())
    assert 0.5e6 <= model.num_parameters() <= 1.0e6  # int8: ~1 MB at most in a bundle
    with torch.no_grad():
        img = model(torch.randn(2, 64, 512))
    assert img.shape == (2, 3, 128, 128) and 0.0 <= float(img.min()) <= float(img.max()) <= 1.0
    cfg = DecoderConfig.for_grid((4, 4), 128)  # another grid: one stage more
    assert FrameDecoder(cfg)(torch.randn(1, 16, 512)).shape == (1, 3, 128, 128)
    with pytest.raises(ValueError, match="power of two"):
        DecoderConfig.for_grid((8, 8), 96)


def test_training_lowers_loss_and_resumes_exactly(
    bundle: Path,
    trained: Path,
    tmp_path: Path,
) -> None:
    lines = [json.loads(s) for s in (trained.parent / "metrics.jsonl").read_text().splitlines()]
    losses = [e["train/loss"] for e in lines if "train/loss" in e]
    assert losses[-1] < 0.95 * losses[0]  # a steady fall from step 5 to 30
    meta = json.loads((trained / "meta.json").read_text())
    assert meta["val_metrics"]["val/psnr"] > 10 and meta["grid"] == [2, 2]
    assert meta["encoder_fingerprint"].startswith("tiny@")
    # Interrupted at step 15 and resumed: the same weights as the uninterrupted run.
    data = bundle.parent / "data"
    train_decoder(_train_cfg(data, tmp_path, stop_at=15))
    train_decoder(_train_cfg(data, tmp_path))
    a = FrameDecoder.from_pretrained(trained).state_dict()
    b = FrameDecoder.from_pretrained(tmp_path / "checkpoint").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_features_of_another_encoder_or_grid_are_refused(trained: Path) -> None:
    model = FrameDecoder.from_pretrained(trained)
    fp = model.config.encoder_fingerprint
    with pytest.raises(EncoderMismatchError, match="other-encoder@1234") as err:
        model.render(torch.zeros(1, 4, 16), fingerprint="other-encoder@1234")
    assert fp in str(err.value)
    with pytest.raises(EncoderMismatchError, match="another encoder or grid"):
        model.render(torch.zeros(1, 64, 16))
    with pytest.raises(EncoderMismatchError, match="grid"):
        FrameDecoder.from_pretrained(trained, expected_grid=(8, 8))


def test_bundle_renders_decoded_or_nearest(
    bundle: Path,
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    own = shutil.copytree(bundle, tmp_path / "bundle")
    with pytest.raises(ArtifactsNotFoundError, match="add-decoder"):
        RLAWorldEnv(str(own), render_mode="rgb_array", render_backend="decoder")
    before = load_artifacts(own).manifest
    add_decoder(own, trained)
    m = load_artifacts(own).manifest
    record = m["decoder"]
    assert record["dtype"] == "int8" and record["heldout_psnr"] is not None
    assert record["stored_vs_float32_psnr"] > 30  # int8 weights barely move the picture
    assert m["total_bytes"] == before["total_bytes"] + record["bytes"]
    assert m["files"]["bank.safetensors"] == before["files"]["bank.safetensors"]
    frames = {}
    for backend in ("auto", "decoder", "nearest"):
        env = RLAWorldEnv(str(own), flow_steps=2, render_mode="rgb_array", render_backend=backend)
        env.reset(seed=0)
        env.step(np.zeros(env.action_space.shape, np.float32))
        frames[backend] = env.render()
        assert env.core.render_backend == ("nearest" if backend == "nearest" else "decoder")
    assert frames["decoder"].shape == (32, 32, 3) and frames["decoder"].dtype == np.uint8
    assert frames["nearest"].shape == (16, 16, 3)  # the bank's thumbnails
    assert np.array_equal(frames["auto"], frames["decoder"])
    # A decoder of another encoder is refused when added, naming both fingerprints.
    other = FrameDecoder(
        DecoderConfig.for_grid(
            (2, 2), 32, feature_dim=16, encoder_fingerprint="tiny@s9-d16-00000000"
        )
    )
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(EncoderMismatchError, match="tiny@s9-d16-00000000") as err:
        add_decoder(own, tmp_path / "other")
    assert m["encoder_fingerprint"] in str(err.value)
    assert main(["add-decoder", "--bundle", str(own), "--decoder", str(tmp_path / "other")]) == 2

    assert "does not match" in capsys.readouterr().err  # one readable line, no traceback
    assert main(["add-decoder", "--bundle", str(own), "--decoder", str(trained)]) == 0
    # Weights that do not match the manifest's checksum: a clear error, never a garbage picture.
    broken = shutil.copytree(own, tmp_path / "broken")
    weights = broken / "decoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CorruptFileError, match="checksum"):
        RLAWorldEnv(str(broken), render_mode="rgb_array", render_backend="decoder")


def test_parts_taken_from_a_bundle_keep_their_weights(tmp_path: Path) -> None:
    """A rebuilt bundle may carry an int8 part of another bundle over (here the embedded LIBERO
    bundle's policy, large enough that its int8 scales are themselves big tensors): storing it as
    int8 again must reproduce the weights, not quantise the stored values and scales twice."""
    from rla_gym.agents import ActorCritic
    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.pipelines.build_bundle import copy_policy

    src = resolve_artifacts(None, "libero") / "policy"
    man = load_artifacts(src.parent).manifest
    obs = (int(man["num_tokens"]), int(man["feature_dim"]))
    k_a = int(man["chunk"]) * int(man["action_dim"])
    copy_policy(src, tmp_path / "policy", obs, k_a, "int8")
    assert (tmp_path / "policy/model.safetensors").read_bytes() == (
        src / "model.safetensors"
    ).read_bytes()
    # Another dtype starts from the float32 the int8 file stands for: within half an int8 step.
    copy_policy(src, tmp_path / "half", obs, k_a, "float16")
    a, b = ActorCritic.load(src).state_dict(), ActorCritic.load(tmp_path / "half").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        step = float(a[k].abs().max()) / 127 if a[k].is_floating_point() else 0.0
        torch.testing.assert_close(b[k], a[k], rtol=0.0, atol=step / 2 + 1e-7, msg=k)
