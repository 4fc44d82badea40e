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
import os
import platform
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctviewer.core.data.imaging import Preprocessing, parse_window
from ctviewer.core.errors import ModelError

CARD_FILE = "model_card.json"
MODEL_FILE = "model.keras"
SPLIT_FILE = "split.json"
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
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def positive(self) -> str:
        return self.classes[1]

    @property
    def model_name(self) -> str:
        return str(self.raw.get("training", {}).get("model", ""))


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
    if not isinstance(raw, dict) or raw.get("format") != CARD_FORMAT:
        raise _card_error(card_path, "not a ctviewer model card (missing format marker)")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > CARD_VERSION:
        raise _card_error(card_path, f"card format version {version!r} is newer than this ctviewer understands "
                          f"({CARD_VERSION}); update ctviewer")
    try:
        prep_raw = raw["preprocessing"]
        window = str(prep_raw["window"])
        size = int(prep_raw["size"])
        resize = str(prep_raw["resize"])
        classes = tuple(str(c) for c in raw["classes"])
        threshold = float(raw["threshold"])
        model_id = str(raw["model_id"])
        sha = str(raw["model_file_sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _card_error(card_path, f"card is missing or has a bad field ({exc})") from None
    try:
        parse_window(window)
    except ValueError:
        raise _card_error(card_path, f"preprocessing window {window!r} is unknown to this ctviewer") from None
    if resize not in ("pad", "crop"):
        raise _card_error(card_path, f"preprocessing resize mode {resize!r} is unknown (expected pad or crop)")
    if size < 16 or size > 4096:
        raise _card_error(card_path, f"preprocessing size {size} is out of range")
    if len(classes) != 2 or classes[0] == classes[1]:
        raise _card_error(card_path, f"card must name two different classes, got {list(classes)}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise _card_error(card_path, f"threshold {threshold} is not a probability")
    return ModelCard(
        model_id=model_id, kind=str(raw.get("kind", "single")), classes=classes,  # type: ignore[arg-type]
        preprocessing=Preprocessing(window=window, size=size, resize=resize),  # type: ignore[arg-type]
        threshold=threshold, threshold_rule=str(raw.get("threshold_rule", "")), model_file_sha256=sha, raw=raw,
    )


# --------------------------------------------------------------------------- bundle / ensemble


@dataclass
class Bundle:
    """A loaded bundle: usable wherever `ctviewer.core.model.inference.predict` takes a model."""

    model: Any  # keras.Model
    card: ModelCard
    folder: Path

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
    def model_id(self) -> str:
        return self.card.model_id


@dataclass
class Ensemble:
    """The k fold models of a cross-validation as one model averaging their probabilities."""

    model: Any  # keras.Model: input -> mean of the members' softmax outputs
    members: list[Any]  # TrainedModel
    threshold: float
    config: Any  # TrainConfig (of the first member; seeds differ per fold)
    classes: tuple[str, str]
    dataset: Any  # DatasetSummary

    @property
    def preprocessing(self) -> Preprocessing:
        return self.members[0].preprocessing

    @property
    def model_id(self) -> str:
        from ctviewer.core.model.identity import weights_id

        return weights_id(self.model)

    @classmethod
    def from_trained(cls, members: list[Any], threshold: float | None = None) -> Ensemble:
        """Average ``members`` (TrainedModel, same preprocessing and classes); threshold = median of theirs."""
        import keras
        import numpy as np

        if not members:
            raise ModelError("an ensemble needs at least one model")
        first = members[0]
        if any(m.preprocessing != first.preprocessing or m.classes != first.classes for m in members):
            raise ModelError("ensemble members differ in preprocessing or classes")
        size = first.preprocessing.size
        inputs = keras.Input((size, size, 1), name="image")
        # Each member becomes a uniquely named sub-model sharing its layers and weights.
        outputs = [keras.Model(m.model.inputs[0], m.model.outputs[0], name=f"member{i}")(inputs)
                   for i, m in enumerate(members)]
        mean = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="mean_probabilities")(outputs)
        model = keras.Model(inputs, mean, name="ctviewer_ensemble")
        t = float(np.median([m.threshold for m in members])) if threshold is None else float(threshold)
        return cls(model=model, members=list(members), threshold=t, config=first.config, classes=first.classes,
                   dataset=first.dataset)


# --------------------------------------------------------------------------- save


def _json_safe(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


def _card_dict(trained: Any, model_sha: str, metrics: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    from ctviewer.core.model.identity import weights_id

    config = trained.config
    prep = trained.preprocessing
    is_ensemble = isinstance(trained, Ensemble)
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "model_id": weights_id(trained.model),
        "kind": "ensemble" if is_ensemble else "single",
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
        "seed": config.seed,
        "training": config.to_dict(),
        "dataset": trained.dataset.to_json_dict(),
        "versions": library_versions(),
    }
    if is_ensemble:
        card["members"] = [{"model_id": weights_id(m.model), "threshold": m.threshold, "seed": m.config.seed,
                            "best_epoch": m.best_epoch, "epochs_run": m.epochs_run} for m in trained.members]
    else:
        card["history"] = trained.history
        card["best_epoch"] = trained.best_epoch
        card["epochs_run"] = trained.epochs_run
        card["cancelled"] = trained.cancelled
        card["split"] = {"method": trained.split.method, "seed": trained.split.seed, "counts": trained.split.counts(),
                         "file": SPLIT_FILE}
        card["notes"] = list(trained.notes)
    metrics_out: dict[str, Any] = {}
    if getattr(trained, "validation_metrics", None) is not None:
        metrics_out["validation"] = trained.validation_metrics.to_json_dict()
    if metrics is not None:
        metrics_out["evaluation"] = metrics.to_json_dict() if hasattr(metrics, "to_json_dict") else metrics
    card["metrics"] = metrics_out
    for key, value in (extra or {}).items():
        card.setdefault(key, value)
    return _json_safe(card)


def save_bundle(trained: Any, folder: str | Path, metrics: Any = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``trained`` (a TrainedModel, an Ensemble or a loaded Bundle) as a bundle folder, atomically.

    Everything is written to a temporary folder next to ``folder`` and renamed into place;
    an existing bundle at ``folder`` is replaced, any other existing content is refused.

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
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / CARD_FILE).is_file())):
        raise ModelError(f"{folder}: exists and is not a ctviewer model bundle; choose a new folder")
    if isinstance(trained, Bundle) and folder.resolve() == trained.folder.resolve():
        return folder  # saving a loaded bundle onto itself: nothing to do
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        if isinstance(trained, Bundle):
            # A loaded bundle is saved as the files it came from (its card cannot be rebuilt).
            for name in (MODEL_FILE, CARD_FILE, SPLIT_FILE):
                if (trained.folder / name).is_file():
                    shutil.copy2(trained.folder / name, tmp / name)
        else:
            model_path = tmp / MODEL_FILE
            trained.model.save(model_path)
            card = _card_dict(trained, _sha256(model_path), metrics, extra)
            (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, allow_nan=False, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
        if not isinstance(trained, (Ensemble, Bundle)):
            (tmp / SPLIT_FILE).write_text(json.dumps(_json_safe(trained.split.to_json_dict()), indent=1) + "\n",
                                          encoding="utf-8")
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
            os.replace(folder, old / "bundle")
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
    return Bundle(model=model, card=card, folder=folder)
