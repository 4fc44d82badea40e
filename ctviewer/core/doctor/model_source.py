"""The model the doctor examines: a ctviewer bundle, a trained model, or a plain Keras file.

For a plain ``.keras`` / ``.h5`` file (the original question's own model) nothing says how
its images were prepared. The doctor can feed three *input scales*:

``unit``
    ctviewer's contract: the image in the "wide" window (HU -1000..1000 -> [0, 1]).
``hu``
    Hounsfield units as read from the DICOM (RescaleSlope/Intercept applied), unscaled.
``raw``
    The stored pixel values (``pixel_array``, e.g. 0-4095 for 12-bit CT), unscaled.

``auto`` (the default) picks the scale the model was most likely trained on: a ctviewer
layer or a ``Rescaling``/``Normalization`` layer at the input says it directly; otherwise
the first ``BatchNormalization`` layer's moving mean/variance are compared with the
statistics its input has under each scale (a model trained on raw HU has moving variances
about 10^6 times larger than one trained on [0, 1]; raw stored values differ from HU by an
offset, which the moving mean shows). With neither, ``unit`` is assumed, and said so.
Images are resized to the model's square input with padding; grey is repeated to 3
channels when the model wants 3.

Loading is safe: Keras ``safe_mode=True`` (no Lambda bytecode), ``.h5`` through Keras'
legacy HDF5 loader under the same safe mode; anything else is a `ModelError`.
TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctviewer.core.data.imaging import Preprocessing, fit_square, load
from ctviewer.core.data.splits import Folds, Split
from ctviewer.core.errors import ImageReadError, ModelError
from ctviewer.core.model.bundle import CARD_FILE, Bundle, load_bundle
from ctviewer.core.model.predictor import Predictor, PredictorBase

if TYPE_CHECKING:
    import keras

SCALES: tuple[str, ...] = ("unit", "hu", "raw")
SCALE_WORDS = {
    "unit": "[0, 1] windowed values",
    "hu": "raw Hounsfield units",
    "raw": "stored pixel values",
}
PLAIN_SUFFIXES = (".keras", ".h5", ".hdf5")
DEFAULT_FREE_SIZE = 256  # input side for a model whose input shape leaves it open


@dataclass
class ModelUnderTest:
    """A model and what the doctor knows about how to feed it and how it was trained."""

    model: keras.Model
    source: str
    kind: str  # "bundle", "trained" or "plain"
    size: int
    channels: int  # 1 or 3; 0 when the input has no channel axis
    preprocessing: Preprocessing  # how to make the "unit" scale images
    classes: tuple[str, str] | None = None  # (negative, positive) when known
    threshold: float = 0.5
    history: dict[str, list[float]] | None = None
    split: Split | Folds | None = None
    validation_auc: float | None = None
    trained_on: str | None = None  # dataset content hash
    input_scale: str = "unit"
    input_scale_reason: str = "ctviewer models take [0, 1] images in their card's window"
    notes: list[str] = field(default_factory=list)

    @property
    def is_ctviewer(self) -> bool:
        return self.kind in ("bundle", "trained")


# --------------------------------------------------------------------------- loading


def load_plain_model(path: str | Path) -> Any:
    """Load a ``.keras`` or ``.h5`` Keras model safely (``safe_mode=True``, not compiled).

    Raises
    ------
    ModelError
        Missing file, another format (SavedModel folder, pickle, ...), or a model Keras
        refuses to load safely (e.g. a Lambda layer).
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model file or bundle folder")
    if path.is_dir():
        raise ModelError(f"{path}: a folder that is not a ctviewer bundle (no model_card.json); a TensorFlow "
                         "SavedModel cannot be loaded by Keras 3: re-save it with model.save('model.keras')")
    if path.suffix.lower() not in PLAIN_SUFFIXES:
        raise ModelError(f"{path}: not a Keras model file (expected .keras, .h5 or .hdf5, or a bundle folder)")
    _check_plain_model_file(path)
    import keras

    import ctviewer.core.model.layers  # noqa: F401 - a ctviewer model saved as a plain file uses its layers

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - every Keras failure here means "cannot load safely"
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: cannot be loaded as a Keras model in safe mode ({type(exc).__name__}: "
                         f"{reason})") from None


def _check_plain_model_file(path: Path) -> None:
    """Say what a damaged or foreign file is before Keras does (it calls a random-bytes .keras "File not found")."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: cannot be loaded: the file exists but is not a Keras v3 .keras archive "
                         "(not a zip file: damaged, cut short or another format)")
    if path.suffix.lower() in (".h5", ".hdf5") and head != b"\x89HDF\r\n\x1a\n":
        raise ModelError(f"{path}: cannot be loaded: the file exists but is not an HDF5 Keras model "
                         "(no HDF5 signature: damaged or another format)")


def _input_geometry(model: Any, source: str) -> tuple[int, int]:
    shape = model.input_shape
    if isinstance(shape, list):
        raise ModelError(f"{source}: the model has {len(shape)} inputs; the doctor checks one-image models")
    shape = tuple(shape)
    if len(shape) == 3:
        h, w, c = shape[1], shape[2], 0
    elif len(shape) == 4:
        h, w, c = shape[1], shape[2], shape[3]
    else:
        raise ModelError(f"{source}: model input {shape} is not an image batch (N, H, W[, C])")
    if c not in (0, 1, 3):
        raise ModelError(f"{source}: model input has {c} channels; the doctor feeds grey (1) or RGB (3) images")
    if h is None and w is None:
        return DEFAULT_FREE_SIZE, int(c)
    if h is None or w is None or h != w:
        raise ModelError(f"{source}: model input {h}x{w} is not square; the doctor feeds square images")
    return int(h), int(c)


def _check_output(model: Any, source: str) -> None:
    shape = model.output_shape
    if isinstance(shape, list) or len(tuple(shape)) != 2 or tuple(shape)[1] not in (1, 2):
        raise ModelError(f"{source}: model output {shape} is not one sigmoid or two softmax probabilities")


def _from_predictor(model: Predictor, source: str, kind: str) -> ModelUnderTest:
    return ModelUnderTest(
        model=model.model, source=source, kind=kind, size=model.preprocessing.size, channels=1,
        preprocessing=model.preprocessing, classes=tuple(model.classes), threshold=float(model.threshold),
        history=dict(model.history) if model.history else None, split=model.split,
        validation_auc=model.validation_auc, trained_on=model.trained_on,
    )


def as_model_under_test(model: ModelUnderTest | Predictor | str | Path | keras.Model) -> ModelUnderTest:
    """Accept a path (bundle folder, ``.keras``/``.h5`` file), a Bundle, a TrainedModel or a keras.Model."""
    if isinstance(model, ModelUnderTest):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.is_dir() and (path / CARD_FILE).is_file():
            return _from_predictor(load_bundle(path), str(path), "bundle")
        keras_model = load_plain_model(path)
        return _plain(keras_model, str(path))
    if isinstance(model, Bundle):
        return _from_predictor(model, str(model.folder), "bundle")
    if isinstance(model, PredictorBase):
        # A TrainedModel (or an Ensemble of them) still in memory, e.g. in the GUI after training.
        return _from_predictor(model, type(model).__name__, "trained")  # type: ignore[arg-type]
    if hasattr(model, "predict_on_batch") and hasattr(model, "input_shape"):
        return _plain(model, getattr(model, "name", "keras model"))
    raise ModelError(f"cannot examine a {type(model).__name__}: give a bundle folder, a .keras/.h5 file or a model")


def _plain(model: Any, source: str) -> ModelUnderTest:
    size, channels = _input_geometry(model, source)
    _check_output(model, source)
    return ModelUnderTest(model=model, source=source, kind="plain", size=size, channels=channels,
                          preprocessing=Preprocessing(window="wide", size=size, resize="pad"),
                          input_scale="unit", input_scale_reason="not examined yet")


# --------------------------------------------------------------------------- images at each scale


def _native(path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(HU, stored values) of one image resized to size x size; padding is the image's minimum (air)."""
    image = load(path)
    hu = image.frame()
    tags = image.meta.tags
    try:
        slope = float(tags.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(tags.get("RescaleIntercept", 0.0) or 0.0)
    except ValueError:
        slope, intercept = 1.0, 0.0
    stored = (hu - np.float32(intercept)) / np.float32(slope if slope else 1.0)

    def fit(a: np.ndarray) -> np.ndarray:
        low = float(a.min())
        return fit_square(a - low, size, "pad") + np.float32(low)

    return fit(hu), fit(stored)


def images_at_scales(mut: ModelUnderTest, items: Sequence[Any], scales: Sequence[str],
                     cache: Any = None) -> dict[str, np.ndarray]:
    """Model-ready arrays (N, S, S[, C]) of ``items`` for each requested scale."""
    from ctviewer.core.data.cache import Cache

    out: dict[str, np.ndarray] = {}
    n, s = len(items), mut.size
    if "unit" in scales:
        cache = cache if cache is not None else Cache()
        unit = np.empty((n, s, s), dtype=np.float32)
        for i, it in enumerate(items):
            unit[i] = cache.array(it.path, mut.preprocessing)
        out["unit"] = unit
    if "hu" in scales or "raw" in scales:
        hu = np.empty((n, s, s), dtype=np.float32)
        raw = np.empty((n, s, s), dtype=np.float32)
        for i, it in enumerate(items):
            try:
                hu[i], raw[i] = _native(it.path, s)
            except ImageReadError as exc:
                raise ModelError(f"{exc.path}: {exc.reason}") from None
        if "hu" in scales:
            out["hu"] = hu
        if "raw" in scales:
            out["raw"] = raw
    return {k: shape_for_model(v, mut.channels) for k, v in out.items()}


def shape_for_model(x: np.ndarray, channels: int) -> np.ndarray:
    """(N, S, S) grey -> (N, S, S, 1), (N, S, S, 3) or unchanged for a model without a channel axis."""
    if channels == 0:
        return x
    x = x[..., None]
    return np.repeat(x, 3, axis=-1) if channels == 3 else x


# --------------------------------------------------------------------------- which scale the model expects


@dataclass
class ScaleReport:
    """What the doctor found out about the input scale a model expects."""

    chosen: str
    reason: str
    evidence_kind: str  # "ctviewer-layer", "normalisation-layer", "batchnorm", "assumed", "forced"
    normalising_layers: list[str] = field(default_factory=list)
    batchnorm_layer: str | None = None
    # scale -> median |log(batch std / moving std)| + median log(1 + |batch mean - moving mean| / moving std);
    # 0 when the images at that scale have exactly the statistics BatchNorm learnt in training.
    batchnorm_mismatch: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, list[float]] = field(default_factory=dict)  # scale -> [p0.5, p99.5]
    detected: str | None = None  # what the evidence says, when there is evidence


_CTVIEWER_INPUT_LAYERS = ("WindowToHU", "GreyToBackboneInput")
_NORMALISING = ("Rescaling", "Normalization")
_COMPUTING = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Conv2DTranspose")


def flat_layers(model: Any) -> list[Any]:
    """All layers, nested models expanded in place (depth first)."""
    out = []
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and layer.layers:
            out.extend(flat_layers(layer))
        else:
            out.append(layer)
    return out


def _input_layers(model: Any) -> list[Any]:
    """Layers before the first convolution / dense layer."""
    out = []
    for layer in flat_layers(model):
        if type(layer).__name__ in _COMPUTING:
            break
        out.append(layer)
    return out


def _spread(x: np.ndarray) -> float:
    lo, hi = np.percentile(x, [0.5, 99.5])
    return float(hi - lo)


def _normalised_misfit(y: np.ndarray, last: Any) -> float:
    """How far values that went through the model's own normalisation are from what it was built for.

    A ``Normalization`` layer is built for z-scores (mean 0, std 1). A ``Rescaling`` layer
    is built to map the training images onto [0, 1] (or [-1, 1] with a negative offset):
    the spread should be about the target width and few values should fall outside it.
    """
    if type(last).__name__ == "Normalization":
        return abs(math.log(max(float(y.std()), 1e-12))) + abs(float(y.mean()))
    offset = float(np.mean(np.asarray(getattr(last, "offset", 0.0), dtype=np.float64)))
    low, high = (-1.0, 1.0) if offset < 0 else (0.0, 1.0)
    outside = float(np.mean((y < low - 0.05) | (y > high + 0.05)))
    return abs(math.log(max(_spread(y), 1e-12) / (high - low))) + 10.0 * outside


def _batchnorm_scores(model: Any, arrays: dict[str, np.ndarray]) -> tuple[str | None, dict[str, float], str]:
    import keras

    bn = next((layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)), None)
    if bn is None:
        return None, {}, "no BatchNormalization layer in the model's top level"
    moving_var = np.asarray(keras.ops.convert_to_numpy(bn.moving_variance), dtype=np.float64)
    moving_mean = np.asarray(keras.ops.convert_to_numpy(bn.moving_mean), dtype=np.float64)
    if np.allclose(moving_var, 1.0) and np.allclose(moving_mean, 0.0):
        return bn.name, {}, f"{bn.name} still has its initial statistics (never trained)"
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        probe = keras.Model(inputs, bn.input)
    except Exception:  # noqa: BLE001 - some graphs cannot be cut at a layer; then there is no evidence
        return bn.name, {}, f"cannot read the input of {bn.name}"
    axes_keep = bn.axis if isinstance(bn.axis, int) else bn.axis[0]
    scores = {}
    for scale, x in arrays.items():
        feats = np.asarray(keras.ops.convert_to_numpy(probe(x, training=False)), dtype=np.float64)
        feats = np.moveaxis(feats, axes_keep, -1).reshape(-1, feats.shape[axes_keep])
        std, mean = feats.std(axis=0), feats.mean(axis=0)
        ok = (moving_var > 1e-12) & (std > 1e-12)
        if not ok.any():
            continue
        # Spread mismatch (log of the std ratio) plus location mismatch (mean offset in moving stds):
        # raw stored values and HU differ mostly by an offset, [0, 1] and HU by a factor of ~2000.
        sd = np.sqrt(moving_var[ok])
        spread = np.abs(np.log(std[ok] / sd))
        offset = np.log1p(np.abs(mean[ok] - moving_mean[ok]) / sd)
        scores[scale] = float(np.median(spread) + np.median(offset))
    return bn.name, scores, ""


def detect_input_scale(mut: ModelUnderTest, arrays: dict[str, np.ndarray], forced: str | None = None) -> ScaleReport:
    """Which of the `SCALES` the model was trained on (see the module docstring); ``forced`` overrides."""
    ranges = {k: [float(np.percentile(v, 0.5)), float(np.percentile(v, 99.5))] for k, v in arrays.items()}
    first = _input_layers(mut.model)
    names = [type(layer).__name__ for layer in first]
    report: ScaleReport
    if mut.is_ctviewer or any(n in _CTVIEWER_INPUT_LAYERS for n in names):
        report = ScaleReport("unit", "a ctviewer model: its input is [0, 1] in the card's window", "ctviewer-layer",
                             ranges=ranges, detected="unit")
    elif any(n in _NORMALISING for n in names):
        layers = [layer for layer in first if type(layer).__name__ in _NORMALISING]
        import keras

        misfit = {}
        for scale, x in arrays.items():
            y = x
            for layer in layers:
                y = np.asarray(keras.ops.convert_to_numpy(layer(y)), dtype=np.float64)
            misfit[scale] = _normalised_misfit(y, layers[-1])
        best = min(misfit, key=lambda k: misfit[k])
        report = ScaleReport(best, f"the model normalises its input itself ({', '.join(layer.name for layer in layers)}); "
                             f"{SCALE_WORDS[best]} come out of it with about unit spread", "normalisation-layer",
                             normalising_layers=[layer.name for layer in layers], ranges=ranges, detected=best)
    else:
        bn_name, scores, why_not = _batchnorm_scores(mut.model, arrays)
        if scores:
            best = min(scores, key=lambda k: scores[k])
            others = " and ".join(f"{v:.2g} for {SCALE_WORDS[k]}" for k, v in scores.items() if k != best)
            report = ScaleReport(best, f"the statistics {bn_name} learnt in training match {SCALE_WORDS[best]} "
                                 f"best (mismatch {scores[best]:.2g}, against {others})", "batchnorm",
                                 batchnorm_layer=bn_name, batchnorm_mismatch=scores, ranges=ranges, detected=best)
        else:
            report = ScaleReport("unit", f"nothing in the model tells its input scale ({why_not}); assuming "
                                 "ctviewer's [0, 1] wide window", "assumed", batchnorm_layer=bn_name, ranges=ranges)
    if forced is not None and forced != "auto":
        if forced not in SCALES:
            raise ModelError(f"unknown input scale {forced!r}; use auto, {', '.join(SCALES)}")
        report.chosen, report.evidence_kind = forced, "forced"
        report.reason = f"input scale {forced} ({SCALE_WORDS[forced]}) as asked"
    return report


def array_scale_report(model: Any, x: np.ndarray) -> ScaleReport:
    """What scale the arrays given to a model are in, judged by their values (for arrays a user feeds).

    A model with a ``Rescaling``/``Normalization`` layer before its first computing layer
    scales its input itself. Otherwise values spanning more than about [-1, 2] reach the
    first layer unscaled: below -500 they are taken for Hounsfield units (air is -1000 HU),
    else for stored pixel values (0-255, 0-4095).
    """
    low, high = (float(v) for v in np.percentile(x, [0.5, 99.5]))
    ranges = {"given": [low, high]}
    normalising = [layer.name for layer in _input_layers(model) if type(layer).__name__ in _NORMALISING]
    if normalising:
        return ScaleReport("given", f"the model normalises its input itself ({', '.join(normalising)})",
                           "normalisation-layer", normalising_layers=normalising, ranges=ranges, detected=None)
    if low < -500.0:
        detected, why = "hu", f"values from {low:.0f} to {high:.0f} (below -500: Hounsfield units)"
    elif high > 2.0 or low < -1.0:
        detected, why = "raw", f"values from {low:.4g} to {high:.4g} (not a [0, 1] or [-1, 1] range)"
    else:
        return ScaleReport("given", f"values from {low:.3g} to {high:.3g}, a normalised range", "array-range",
                           ranges=ranges, detected="unit")
    return ScaleReport("given", f"the arrays hold {why} and the model has no Rescaling or Normalization layer "
                       "before its first convolution", "array-range", ranges={detected: [low, high]},
                       detected=detected)
