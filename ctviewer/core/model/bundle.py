"""Model bundles: a folder with ``model.keras`` and ``model_card.json`` (plus ``split.json``).

The card says everything needed to use the model correctly and to question it later:
class names and the positive class, the preprocessing (window, input size, resize mode),
the decision threshold and how it was chosen, the training config and seed, what data it
was trained on (summary and content hash), validation metrics and library versions.

Loading is defensive: the card must be one this version understands, its preprocessing
must be one we can reproduce, the model file must be the one the card was written for
(SHA-256), must be a Keras v3 archive with nothing but config, metadata and weights in
it (no pickles), and is loaded with ``safe_mode=True`` (no arbitrary code). The model's
input and output shapes must match the card.

Reading a card (`read_card`) does not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctviewer.core.data.imaging import Preprocessing, parse_window
from ctviewer.core.errors import ModelError
from ctviewer.core.folders import output_set
from ctviewer.core.jsonable import json_safe
from ctviewer.core.model.ensemble import Ensemble
from ctviewer.core.model.predictor import PredictorBase
from ctviewer.core.model.provenance import OOF_FILE, TRAINING_IMAGES_FILE, write_oof_file, write_training_images_file

if TYPE_CHECKING:
    import keras

    from ctviewer.core.data.splits import Split
    from ctviewer.core.metrics.evaluation import Metrics
    from ctviewer.core.training.results import TrainedModel

CARD_FILE = "model_card.json"
MODEL_FILE = "model.keras"
SPLIT_FILE = "split.json"
# What ctviewer writes in a bundle: replacing a bundle replaces these and keeps anything else.
BUNDLE_FILES = (MODEL_FILE, CARD_FILE, SPLIT_FILE, TRAINING_IMAGES_FILE, OOF_FILE)
CARD_FORMAT = "ctviewer-model-bundle"
CARD_VERSION = 1
# A Keras v3 archive holds these; anything else (pickles, extra code) is refused.
_ALLOWED_ARCHIVE_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}


# --------------------------------------------------------------------------- card


@dataclass
class ModelCard:
    """The parsed ``model_card.json``; ``raw`` keeps every field, including ones added later."""

    model_id: str
    kind: str  # "single" or "ensemble"
    classes: tuple[str, str]  # (negative, positive)
    preprocessing: Preprocessing
    threshold: float
    threshold_rule: str
    model_file_sha256: str
    model_name: str = ""  # the recipe, e.g. "default"
    tta: bool = False  # the recipe's test-time augmentation choice
    history: dict[str, list[float]] | None = None
    validation_auc: float | None = None
    trained_on: str | None = None  # content hash of the training data
    conv_precision: str = "float32"  # the conv blocks' compute dtype (cards before it: float32)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def positive(self) -> str:
        return self.classes[1]


def _optional_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The card fields a bundle may lack (older or hand-made cards): read once, typed, defaulted."""
    training = raw.get("training") if isinstance(raw.get("training"), dict) else {}
    metrics = raw.get("metrics") if isinstance(raw.get("metrics"), dict) else {}
    validation = metrics.get("validation") if isinstance(metrics.get("validation"), dict) else {}
    dataset = raw.get("dataset") if isinstance(raw.get("dataset"), dict) else {}
    history = raw.get("history")
    auc = validation.get("auc")
    trained_on = dataset.get("content_hash")
    return {
        "model_name": str(training.get("model", "")),
        "tta": bool(training.get("tta", False)),
        "history": history if isinstance(history, dict) and history else None,
        "validation_auc": float(auc) if isinstance(auc, (int, float)) and not isinstance(auc, bool) else None,
        "trained_on": str(trained_on) if trained_on else None,
        "conv_precision": "bfloat16" if raw.get("conv_precision") == "bfloat16" else "float32",
    }


def _card_error(folder: Path, reason: str) -> ModelError:
    return ModelError(f"{folder}: {reason}")


def read_card(folder: str | Path) -> ModelCard:
    """Parse and check a bundle's card without loading the model (no TensorFlow).

    Raises
    ------
    ModelError
        Not a bundle folder, unreadable or foreign card, or preprocessing we cannot honour.
    """
    folder = Path(folder)
    if folder.is_file():
        raise _card_error(folder, "is a file, not a ctviewer model bundle folder (expected a folder with "
                          f"{MODEL_FILE} and {CARD_FILE}; plain model files are not accepted)")
    if not folder.is_dir():
        raise _card_error(folder, "no such model bundle folder")
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise _card_error(folder, f"not a ctviewer model bundle (no {CARD_FILE}); plain model files are not accepted")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _card_error(card_path, f"cannot be read as JSON ({exc})") from None
    except RecursionError:
        raise _card_error(card_path, "cannot be read as JSON (nested too deeply)") from None
    if not isinstance(raw, dict) or raw.get("format") != CARD_FORMAT:
        raise _card_error(card_path, "not a ctviewer model card (missing format marker)")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > CARD_VERSION:
        raise _card_error(card_path, f"card format version {version!r} is newer than this ctviewer understands "
                          f"({CARD_VERSION}); update ctviewer")
    window, size, resize, classes, threshold, model_id, sha = _checked_card_fields(raw, card_path)
    return ModelCard(
        model_id=model_id, kind=str(raw.get("kind", "single")), classes=classes,  # type: ignore[arg-type]
        preprocessing=Preprocessing(window=window, size=size, resize=resize),  # type: ignore[arg-type]
        threshold=threshold, threshold_rule=str(raw.get("threshold_rule", "")), model_file_sha256=sha,
        **_optional_fields(raw), raw=raw,
    )


_CardFields = tuple[str, int, str, tuple[str, str], float, str, str]


def _checked_card_fields(raw: dict[str, Any], card_path: Path) -> _CardFields:
    """The card's fields that prediction relies on, each checked for type and meaning.

    A card that is wrong must be refused, not read into something else: ``classes: "ab"`` is
    not two classes, an input size of 64.7 is no size, a window of ``0,inf`` windows to NaN.
    """
    def bad(reason: str) -> ModelError:
        return _card_error(card_path, reason)

    try:
        prep_raw, classes_raw, threshold = raw["preprocessing"], raw["classes"], raw["threshold"]
        window, size, resize = prep_raw["window"], prep_raw["size"], prep_raw["resize"]
        model_id, sha = raw["model_id"], raw["model_file_sha256"]
    except (KeyError, TypeError) as exc:
        raise bad(f"card is missing or has a bad field ({exc})") from None
    if not isinstance(classes_raw, list) or len(classes_raw) != 2 or not all(
            isinstance(c, str) and c for c in classes_raw) or classes_raw[0] == classes_raw[1]:
        raise bad(f"card must name two different classes as a list of two names, got {classes_raw!r}")
    classes = (classes_raw[0], classes_raw[1])
    positive = raw.get("positive", classes[1])
    if positive != classes[1]:
        raise bad(f"card says the positive class is {positive!r} but its classes {list(classes)} put "
                  f"{classes[1]!r} second (the positive class)")
    if not isinstance(window, str):
        raise bad(f"preprocessing window {window!r} is not a window name or CENTER,WIDTH")
    try:
        parse_window(window)
    except ValueError:
        raise bad(f"preprocessing window {window!r} is unknown to this ctviewer (or not finite)") from None
    if resize not in ("pad", "crop", "stretch"):
        raise bad(f"preprocessing resize mode {resize!r} is unknown (expected pad, crop or stretch)")
    if isinstance(size, bool) or not isinstance(size, int):
        raise bad(f"preprocessing size {size!r} is not a whole number of pixels")
    if size < 16 or size > 4096:
        raise bad(f"preprocessing size {size} is out of range")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise bad(f"threshold {threshold!r} is not a number")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise bad(f"threshold {threshold} is not a probability")
    if not isinstance(model_id, str) or not isinstance(sha, str):
        raise bad("model_id and model_file_sha256 must be text")
    return window, size, resize, classes, float(threshold), model_id, sha


# --------------------------------------------------------------------------- bundle


@dataclass
class Bundle(PredictorBase):
    """A loaded bundle: a `ctviewer.core.model.predictor.Predictor` described by its card."""

    model: keras.Model
    card: ModelCard
    folder: Path
    split: Split | None = None  # from split.json, when the bundle has a readable one

    @property
    def preprocessing(self) -> Preprocessing:
        return self.card.preprocessing

    @property
    def classes(self) -> tuple[str, str]:
        return self.card.classes

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def tta(self) -> bool:
        return self.card.tta

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def history(self) -> dict[str, list[float]] | None:
        return self.card.history

    @property
    def validation_auc(self) -> float | None:
        return self.card.validation_auc

    @property
    def trained_on(self) -> str | None:
        return self.card.trained_on


def read_split(folder: str | Path) -> Split | None:
    """The bundle's split record, or None when it has none or it is damaged (only the split checks need it)."""
    from ctviewer.core.data.splits import Split

    path = Path(folder) / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        return Split.from_json_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- save


def library_versions() -> dict[str, str]:
    from importlib import metadata

    from ctviewer import __version__

    versions = {"ctviewer": __version__, "python": platform.python_version()}
    for dist in ("tensorflow", "keras", "numpy", "pydicom", "scikit-learn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = ""
    return versions


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _card_dict(trained: TrainedModel | Ensemble, model_sha: str, metrics: Metrics | dict[str, Any] | None,
               extra: dict[str, Any] | None) -> dict[str, Any]:
    from ctviewer.core.model.identity import weights_id
    from ctviewer.core.model.precision import model_conv_precision

    config = trained.config
    prep = trained.preprocessing
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "model_id": weights_id(trained.model),
        "kind": trained.card_kind,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_file": MODEL_FILE,
        "model_file_sha256": model_sha,
        "classes": list(trained.classes),
        "positive": trained.classes[1],
        "preprocessing": {"window": prep.window, "size": prep.size, "resize": prep.resize,
                          "input_shape": [prep.size, prep.size, 1], "range": [0.0, 1.0]},
        "threshold": float(trained.threshold),
        "threshold_rule": config.threshold_rule,
        "threshold_target": config.threshold_target,
        "threshold_chosen_on": ("pooled out-of-fold predictions of every training image"
                                if getattr(trained, "cross_validation", None) is not None
                                else "median of the members' validation thresholds" if isinstance(trained, Ensemble)
                                else "the validation hold-out"),
        "seed": config.seed,
        # What the saved layers compute in (their dtype policies), as trained and as they predict.
        "conv_precision": model_conv_precision(trained.model),
        "training": config.to_dict(),
        "dataset": trained.dataset.to_json_dict(),
        "versions": library_versions(),
        **trained.card_fields(),
    }
    cv = getattr(trained, "cross_validation", None)
    if cv is not None:
        card["expected_performance"] = {**cv.expected_performance(), "file": OOF_FILE}
        card["cancelled"] = bool(cv.cancelled)
        card["notes"] = list(cv.notes)
        if metrics is None:
            metrics = cv.metrics
        extra = {"cross_validation": cv.to_json_extra(), **(extra or {})}
        if "levels" not in extra:
            from ctviewer.core.metrics.aggregate import level_thresholds

            # Series/patient thresholds on the same pooled out-of-fold predictions as the image threshold.
            extra["levels"] = level_thresholds(cv.predictions, threshold_rule=config.threshold_rule,
                                               target=config.threshold_target,
                                               chosen_on="pooled out-of-fold predictions")
    metrics_out: dict[str, Any] = {}
    if trained.validation_metrics is not None:
        metrics_out["validation"] = trained.validation_metrics.to_json_dict()
    if metrics is not None:
        metrics_out["evaluation"] = metrics if isinstance(metrics, dict) else metrics.to_json_dict()
    card["metrics"] = metrics_out
    validation = getattr(trained, "validation_predictions", None)
    if validation is not None and "levels" not in (extra or {}):
        from ctviewer.core.metrics.aggregate import level_thresholds

        # Series/patient thresholds, chosen on the same hold-out as the image threshold.
        card["levels"] = level_thresholds(validation, threshold_rule=config.threshold_rule,
                                          target=config.threshold_target, chosen_on="validation hold-out")
    for key, value in (extra or {}).items():
        card.setdefault(key, value)
    return json_safe(card)


def check_bundle_target(folder: str | Path, overwrite: bool = True) -> Path:
    """Raise ModelError unless a bundle can be saved at ``folder`` (call it before long work).

    ``folder`` may be new, an empty folder, or (with ``overwrite``) an existing bundle.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"{folder}: exists and is not a folder; choose a new folder for the model bundle")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / CARD_FILE).is_file():
            raise ModelError(f"{folder}: exists and is not a ctviewer model bundle; choose a new folder")
        if not overwrite:
            raise ModelError(f"{folder}: a model bundle is already there; choose a new folder, or replace its "
                             f"{', '.join(BUNDLE_FILES)} with --overwrite (other files in it are kept)")
    return folder


def save_bundle(trained: TrainedModel | Ensemble | Bundle, folder: str | Path,
                metrics: Metrics | dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                overwrite: bool = True) -> Path:
    """Write ``trained`` (a TrainedModel, an Ensemble or a loaded Bundle) as a bundle folder, atomically.

    Everything is written to a staging folder next to ``folder`` and swapped into place in
    one step (`ctviewer.core.folders.output_set`). An existing bundle at ``folder`` is replaced
    (unless ``overwrite`` is False): its `BUNDLE_FILES` are new, any other file a user put
    there (a CSV, a gradcam/ folder) is kept. Any other existing content is refused.

    Parameters
    ----------
    metrics
        Optional `Metrics` (e.g. cross-validated) stored under ``metrics.evaluation``.
    extra
        More card fields (existing keys are never overwritten).

    Returns
    -------
    Path
        The bundle folder.
    """
    folder = Path(folder)
    if isinstance(trained, Bundle) and folder.exists() and folder.resolve() == trained.folder.resolve():
        return folder  # saving a loaded bundle onto itself: nothing to do
    check_bundle_target(folder, overwrite)
    with output_set(folder, own=BUNDLE_FILES) as tmp:
        if isinstance(trained, Bundle):
            # A loaded bundle is saved as the files it came from (its card cannot be rebuilt).
            for name in (MODEL_FILE, CARD_FILE, SPLIT_FILE, OOF_FILE, TRAINING_IMAGES_FILE):
                if (trained.folder / name).is_file():
                    shutil.copy2(trained.folder / name, tmp / name)
        else:
            model_path = tmp / MODEL_FILE
            trained.model.save(model_path)
            card = _card_dict(trained, _sha256(model_path), metrics, extra)
            (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, allow_nan=False, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
        if not isinstance(trained, (Ensemble, Bundle)):
            (tmp / SPLIT_FILE).write_text(json.dumps(json_safe(trained.split.to_json_dict()), indent=1) + "\n",
                                          encoding="utf-8")
            if trained.dataset.images:
                write_training_images_file(tmp, trained)
        if isinstance(trained, Ensemble) and trained.cross_validation is not None:
            write_oof_file(tmp, trained.cross_validation)
    return folder


# --------------------------------------------------------------------------- load


def _check_archive(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a Keras v3 .keras archive (legacy HDF5/SavedModel files are not accepted)")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    unexpected = sorted(n for n in names - _ALLOWED_ARCHIVE_MEMBERS if not n.startswith("assets/"))
    if unexpected or "config.json" not in names:
        detail = ", ".join(unexpected[:5]) or "no config.json"
        raise ModelError(f"{path}: unexpected content in the model archive ({detail}); refusing to load it")
    if any(n.startswith("assets/") and n.lower().endswith((".pkl", ".pickle", ".py", ".npy")) for n in names):
        raise ModelError(f"{path}: the model archive contains pickled or code assets; refusing to load it")


def load_bundle(folder: str | Path) -> Bundle:
    """Load a bundle for prediction; refuse anything unsafe or that we cannot use as the card says.

    Raises
    ------
    ModelError
        Not a bundle, a card we cannot honour, a model file that is not the one the card
        describes, unsafe or foreign content, or input/output shapes that do not match.
    """
    folder = Path(folder)
    card = read_card(folder)
    model_path = folder / MODEL_FILE
    if not model_path.is_file():
        raise _card_error(folder, f"bundle has no {MODEL_FILE}")
    if _sha256(model_path) != card.model_file_sha256:
        raise ModelError(f"{model_path}: file does not match its model card (modified or damaged)")
    _check_archive(model_path)

    import keras

    import ctviewer.core.model.layers  # noqa: F401 - registers ctviewer's custom layers for deserialisation

    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types; all mean "cannot load safely"
        raise ModelError(f"{model_path}: cannot be loaded safely ({type(exc).__name__}: {str(exc)[:300]})") from None
    size = card.preprocessing.size
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if in_shape != (None, size, size, 1):
        raise ModelError(f"{model_path}: model input {in_shape} does not match the card's {size}x{size}x1 images")
    if out_shape != (None, 2):
        raise ModelError(f"{model_path}: model output {out_shape} is not two class probabilities")
    return Bundle(model=model, card=card, folder=folder, split=read_split(folder))
