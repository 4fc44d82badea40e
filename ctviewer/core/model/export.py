"""Export a model bundle for deployment outside ctviewer: TensorFlow SavedModel, ONNX or TFLite.

The exported graph is the whole prediction ctviewer makes from a preprocessed image: the
bundle's model (an ensemble is already one graph averaging its members) called in inference
mode, the recipe's test-time augmentation when it uses it, and the positive-class column:
input ``image`` float32 (N, size, size, 1) in [0, 1] -> output ``probability`` (N,).
No custom layer survives the export, so the artifact loads without ctviewer.

Nothing broken is ever written: the artifact is made in a temporary folder next to the
target, loaded back with its own runtime (TensorFlow, onnxruntime, LiteRT) and run on check
images; only if it gives ctviewer's probabilities (within `TOLERANCE`) is the folder, with
``preprocessing.json`` (`ctviewer.core.model.contract`), the model card and
``predict_example.py``, renamed into place.

Conversion uses Keras' own ``Model.export`` (tf2onnx for ONNX, the TFLite converter for
TFLite); ONNX needs the ``export`` extra: ``pip install "ctviewer-cnn[export]"``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ctviewer.core.errors import Cancelled, ModelError
from ctviewer.core.events import EventCallback, Progress, StopCheck, emit, stop_requested
from ctviewer.core.folders import output_set
from ctviewer.core.model.contract import CONTRACT_FILE, CONTRACT_FORMAT, INPUT_NAME, OUTPUT_NAME, preprocessing_contract

FORMATS: tuple[str, ...] = ("savedmodel", "onnx", "tflite")
ARTIFACT_NAMES = {"savedmodel": "saved_model", "onnx": "model.onnx", "tflite": "model.tflite"}
_KERAS_FORMATS = {"savedmodel": "tf_saved_model", "onnx": "onnx", "tflite": "litert"}
# Largest allowed |exported - ctviewer| probability on the check images: float32 graphs
# differ only by operation order; TFLite fuses and reorders more.
TOLERANCE = {"savedmodel": 1e-5, "onnx": 1e-5, "tflite": 1e-4}
EXAMPLE_FILE = "predict_example.py"
CARD_COPY = "model_card.json"
INSTALL_HINT = 'pip install "ctviewer-cnn[export]"'
_STEPS = 4  # build, convert, verify, write


class ExportError(ModelError):
    """A model cannot be exported in the asked format (names the layer or op when it can)."""


@dataclass(frozen=True)
class ExportResult:
    """What `export_bundle` wrote and how well the artifact matched ctviewer."""

    folder: Path
    format: str
    artifact: Path
    size_bytes: int
    max_abs_difference: float  # on the check images, vs ctviewer's probabilities
    check_images: int
    tta: bool
    seconds: float


# --------------------------------------------------------------------------- runtimes


def missing_packages(fmt: str) -> list[str]:
    """Distributions format ``fmt`` needs that are not installed (empty when it can be exported)."""
    fmt = _check_format(fmt)
    needed = {"savedmodel": ["tensorflow"], "onnx": ["tf2onnx", "onnx", "onnxruntime"],
              "tflite": ["tensorflow"]}[fmt]
    return [name for name in needed if importlib.util.find_spec(name) is None]


def _check_format(fmt: str) -> str:
    key = str(fmt).strip().lower()
    if key not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return key


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def runtime_name(fmt: str) -> str:
    """The runtime that runs format ``fmt`` (with its installed version)."""
    if fmt == "onnx":
        return f"onnxruntime {_version('onnxruntime')}".strip()
    if fmt == "tflite" and importlib.util.find_spec("ai_edge_litert") is not None:
        return f"ai-edge-litert {_version('ai-edge-litert')}".strip()
    return f"tensorflow {_version('tensorflow')}".strip()


def load_runtime(fmt: str, artifact: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """Load an exported artifact with its own runtime: a function (N, S, S, 1) float32 -> (N,) probabilities.

    The function calls the artifact by its contract names (``image`` in, ``probability`` out),
    so a missing or renamed input/output fails here.
    """
    fmt = _check_format(fmt)
    path = str(artifact)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda x: np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, np.float32)})[0])
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda x: serve(**{INPUT_NAME: tf.constant(x, tf.float32)})[OUTPUT_NAME].numpy()
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert.interpreter import Interpreter
    else:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806 - the class, as LiteRT names it
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return lambda x: np.asarray(runner(**{INPUT_NAME: np.asarray(x, np.float32)})[OUTPUT_NAME])


# --------------------------------------------------------------------------- the graph


def inference_graph(model: Any, tta: bool) -> Any:
    """``model`` as the exported graph: ``image`` -> ``{"probability": (N,)}``, inference mode, TTA inside.

    ``training=False`` is fixed in the graph: without it the recipe's augmentation layers
    (RandomFlip, RandomRotation...) default to training mode when traced for export.
    """
    import keras

    from ctviewer.core.model.predictor import input_size

    size = input_size(model)

    class MirrorLeftRight(keras.layers.Layer):
        """The TTA view of `ctviewer.core.model.inference.tta_views`: the image mirrored left-right."""

        def call(self, x):
            return keras.ops.flip(x, axis=2)

    class PositiveColumn(keras.layers.Layer):
        def call(self, p):
            return p[:, 1]

    image = keras.Input((size, size, 1), name=INPUT_NAME, dtype="float32")
    probs = model(image, training=False)
    if tta:
        mirrored = model(MirrorLeftRight(name="tta_mirror")(image), training=False)
        probs = keras.layers.Average(name="tta_mean")([probs, mirrored])
    positive = PositiveColumn(name=OUTPUT_NAME)(probs)
    graph = keras.Model(image, {OUTPUT_NAME: positive}, name="ctviewer_export")
    graph(np.zeros((1, size, size, 1), np.float32))  # Keras' ONNX export refuses a model never called
    return graph


def check_images(size: int, count: int = 6, seed: int = 0) -> np.ndarray:
    """Deterministic (count, size, size, 1) images in [0, 1] to compare an export with ctviewer on.

    Body-like discs of varied brightness over a dark background plus noise: they reach every
    branch of the recipes (HU windows, the body mask of the histograms), unlike constant images.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    images = np.empty((count, size, size, 1), dtype=np.float32)
    for i in range(count):
        cx, cy, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.2, 0.45)
        body = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        level = 0.5 + 0.03 * i + 0.05 * np.sin(6 * xx + i)
        image = np.where(body, level, 0.02) + rng.normal(0, 0.02, (size, size))
        images[i, ..., 0] = np.clip(image, 0.0, 1.0)
    return images


# --------------------------------------------------------------------------- errors naming the layer


def _layer_names(model: Any) -> set[str]:
    names: set[str] = set()
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ != "InputLayer":  # an input is never what cannot be converted
            names.add(layer.name)
        names |= _layer_names(layer)
    return names


def layers_named_in(text: str, layer_names: set[str]) -> list[str]:
    """The model's layers that ``text`` (an op path or converter message) names, deepest path element last."""
    found: list[str] = []
    for part in re.split(r"[/\s'\"\[\]():;,@]+", text):
        name = re.sub(r"_\d+$", "", part)
        for candidate in (part, name):
            if candidate in layer_names and candidate not in found:
                found.append(candidate)
                break
    return found


class _UnsupportedOps(logging.Handler):
    """Collects tf2onnx's "Tensorflow op [path: Type] is not supported" reports (it logs them and carries on)."""

    pattern = re.compile(r"Tensorflow op \[(?P<path>[^:\]]+): (?P<op>\w+)\] is not supported")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.ops: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = self.pattern.search(record.getMessage())
        if match:
            self.ops.append((match["op"], match["path"]))


@contextmanager
def _quiet_tf2onnx() -> Iterator[_UnsupportedOps]:
    """tf2onnx's INFO/WARNING chatter off; its unsupported-op errors collected."""
    logger = logging.getLogger("tf2onnx")
    handler = _UnsupportedOps()
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _unsupported_message(fmt: str, ops: list[tuple[str, str]], layer_names: set[str]) -> str:
    parts = []
    for op in dict.fromkeys(op for op, _ in ops):
        layers = sorted({layer for o, path in ops if o == op for layer in layers_named_in(path, layer_names)[-1:]})
        parts.append(f"op {op}" + (f" in layer {', '.join(layers[:4])}" if layers else ""))
    return f"cannot export to {fmt}: the converter does not support " + "; ".join(parts)


# --------------------------------------------------------------------------- export


def _converter_options(fmt: str) -> dict[str, Any]:
    if fmt != "tflite":
        return {}
    import tensorflow as tf

    # Built-in ops only: Keras would fall back to TensorFlow ("Flex") ops, which plain LiteRT
    # cannot run; refusing them makes the converter name the op and its layer instead.
    return {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}


def _convert(graph: Any, fmt: str, path: Path, layer_names: set[str]) -> None:
    try:
        with _quiet_tf2onnx() as unsupported:
            graph.export(str(path), format=_KERAS_FORMATS[fmt], verbose=False, **_converter_options(fmt))
    except Exception as exc:  # noqa: BLE001 - converters raise anything; the user needs the layer and op
        text = str(exc)
        layers = layers_named_in(text, layer_names)
        ops = sorted(set(re.findall(r"'(?:tf|tfl)\.(\w+)'", text)))
        where = ([f"op {', '.join(ops[:4])}"] if ops else []) + ([f"in layer {', '.join(layers[-3:])}"] if layers else [])
        named = f" ({' '.join(where)})" if where else ""
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
        raise ExportError(f"cannot export to {fmt}{named}: {type(exc).__name__}: {first[:300]}") from None
    if unsupported.ops:
        raise ExportError(_unsupported_message(fmt, unsupported.ops, layer_names))
    if not path.exists():
        raise ExportError(f"cannot export to {fmt}: the converter wrote no {path.name}")


def _verify(fmt: str, path: Path, x: np.ndarray, expected: np.ndarray) -> float:
    try:
        run = load_runtime(fmt, path)
        got = np.concatenate([np.asarray(run(x[i : i + 1]), np.float64).reshape(-1) for i in range(len(x))] +
                             [np.asarray(run(x), np.float64).reshape(-1)])
    except Exception as exc:  # noqa: BLE001 - any failure to load or run means a broken artifact
        raise ExportError(f"the exported {fmt} model cannot be run by {runtime_name(fmt)} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}); "
                          "nothing was written") from None
    reference = np.concatenate([expected, expected])
    if got.shape != reference.shape or not np.all(np.isfinite(got)):
        raise ExportError(f"the exported {fmt} model gives {got.shape} outputs, expected {reference.shape}; "
                          "nothing was written")
    diff = float(np.max(np.abs(got - reference)))
    if diff > TOLERANCE[fmt]:
        raise ExportError(f"the exported {fmt} model differs from ctviewer's probability by {diff:.2e} "
                          f"(> {TOLERANCE[fmt]:.0e}) on the check images; nothing was written")
    return diff


def _size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_export_target(out: str | Path, overwrite: bool = True) -> Path:
    """Raise `ExportError` unless an export can be written at ``out`` (call it before the work).

    ``out`` may be new, an empty folder, or (with ``overwrite``) an earlier ctviewer export,
    which is replaced whole. Anything else there is refused, so no user file is ever deleted.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder; choose a new folder for the export")
    if out.is_dir() and any(out.iterdir()):
        try:
            marker = json.loads((out / CONTRACT_FILE).read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            marker = None
        if marker != CONTRACT_FORMAT:
            raise ExportError(f"{out}: exists and is not a ctviewer export; choose a new or empty folder")
        if not overwrite:
            raise ExportError(f"{out}: an export is already there; choose a new folder, or replace it with "
                              "--overwrite")
    return out


def _as_bundle(model: Any, workdir: Path) -> Any:
    """A loaded `Bundle` for anything `predict` takes: a bundle folder, a Bundle, a trained model or ensemble."""
    from ctviewer.core.model.bundle import Bundle, load_bundle, save_bundle
    from ctviewer.core.model.predictor import PredictorBase

    if isinstance(model, Bundle):
        return model
    if isinstance(model, (str, Path)):
        return load_bundle(model)
    if not isinstance(model, PredictorBase):
        raise ExportError(f"cannot export a {type(model).__name__}: give a model bundle folder or a trained model")
    # An unsaved model gets its card the one way cards are made: saved as a bundle (in a temp folder).
    return load_bundle(save_bundle(model, workdir / "bundle"))


def _exportable(model: Any, fmt: str) -> tuple[Any, str]:
    """The model to convert and its conv precision: a bfloat16 model's float32 twin for ONNX and LiteRT,
    whose CPU kernels have no bfloat16 convolutions (a SavedModel runs bfloat16 as trained)."""
    from ctviewer.core.model.precision import float32_twin, model_conv_precision

    precision = model_conv_precision(model)
    if precision == "bfloat16" and fmt in ("onnx", "tflite"):
        return float32_twin(model), precision
    return model, precision


def export_bundle(model: Any, fmt: str, out: str | Path, tta: bool | None = None,
                  on_event: EventCallback | None = None, should_stop: StopCheck | None = None) -> ExportResult:
    """Export a model for deployment: the artifact, ``preprocessing.json``, the card and ``predict_example.py``.

    Parameters
    ----------
    model
        A model bundle folder, a loaded `Bundle`, or an unsaved trained model / ensemble.
    fmt
        ``"savedmodel"``, ``"onnx"`` or ``"tflite"``.
    out
        The export folder; must be new, empty or an earlier export (which is replaced).
    tta
        Put test-time augmentation into the graph; None: as the model's recipe says.
    on_event, should_stop
        ``Progress(done, 4, "exporting")``; cancel between steps (raises `Cancelled`).

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportError
        The format's packages are missing, the converter cannot express a layer or op (named),
        or the artifact does not load or does not reproduce ctviewer's probabilities.
    """
    from ctviewer.core.model.bundle import CARD_FILE
    from ctviewer.core.model.inference import predict_arrays

    fmt = _check_format(fmt)
    missing = missing_packages(fmt)
    if missing:
        raise ExportError(f"{fmt} export needs {', '.join(missing)}, not installed: {INSTALL_HINT}")
    out = check_export_target(out)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    # The work folder (an unsaved model's temporary bundle) is not part of the export.
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        with output_set(out, own=None) as folder:
            bundle = _as_bundle(model, work)
            tta = bundle.tta if tta is None else bool(tta)

            def step(done: int) -> None:
                emit(on_event, Progress(done, _STEPS, "exporting"))
                if stop_requested(should_stop):
                    raise Cancelled("export cancelled")

            source, precision = _exportable(bundle.model, fmt)
            graph = inference_graph(source, tta)
            step(1)
            artifact = folder / ARTIFACT_NAMES[fmt]
            _convert(graph, fmt, artifact, _layer_names(bundle.model))
            step(2)
            x = check_images(bundle.preprocessing.size)
            expected = predict_arrays(source, x, batch_size=len(x), tta=tta)
            diff = _verify(fmt, artifact, x, expected)
            step(3)
            contract = preprocessing_contract(bundle.card, {"format": fmt, "file": ARTIFACT_NAMES[fmt],
                                                            "runtime": runtime_name(fmt)}, tta)
            contract["verification"] = {"check_images": len(x), "max_abs_difference": diff,
                                        "tolerance": TOLERANCE[fmt], "against": "ctviewer predict (Keras)"}
            if source is not bundle.model:
                trained = predict_arrays(bundle.model, x, batch_size=len(x), tta=tta)
                contract["verification"]["against"] = "ctviewer predict (Keras) of the float32 twin"
                contract["conv_precision"] = {
                    "bundle": precision, "artifact": "float32",
                    "max_abs_difference_to_bundle": float(np.max(np.abs(expected - trained)))}
            (folder / CONTRACT_FILE).write_text(json.dumps(contract, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
            shutil.copy2(bundle.folder / CARD_FILE, folder / CARD_COPY)
            shutil.copy2(Path(__file__).with_name("predict_example.py"), folder / EXAMPLE_FILE)
        step(4)
        return ExportResult(folder=out, format=fmt, artifact=out / ARTIFACT_NAMES[fmt],
                            size_bytes=_size_bytes(out / ARTIFACT_NAMES[fmt]), max_abs_difference=diff,
                            check_images=len(x), tta=tta, seconds=time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
