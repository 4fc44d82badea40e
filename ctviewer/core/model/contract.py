"""The preprocessing contract of an exported model: exactly how a file becomes its input.

An exported model (SavedModel, ONNX, TFLite) takes ``image``: float32 (N, size, size, 1)
in [0, 1], already windowed and resized, and returns ``probability``: (N,) of the positive
class. Everything before that is ctviewer's reading and preprocessing
(`ctviewer.core.data.imaging.load` and `preprocess`); `preprocessing_contract` writes it
down as plain data for ``preprocessing.json``, so that someone without ctviewer can
reproduce the same input (``predict_example.py`` does, with numpy, pydicom and Pillow).

Imports nothing heavy (no TensorFlow): the contract is a function of the card alone.
"""

from __future__ import annotations

from typing import Any

from ctviewer.core.data.imaging import parse_window

CONTRACT_FORMAT = "ctviewer-preprocessing"
CONTRACT_VERSION = 1
CONTRACT_FILE = "preprocessing.json"
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
# ctviewer.core.data.imaging.resolve_window's robust data window for images not in HU.
PERCENTILES = (0.5, 99.5)
MIN_WIDTH = 1e-6


def _read_rules() -> dict[str, Any]:
    return {
        "dicom": [
            "pixels = pydicom pixel_array as float32 (colour DICOM: grey = 0.299 R + 0.587 G + 0.114 B)",
            "if RescaleSlope or RescaleIntercept is present: pixels = pixels * float32(slope or 1) "
            "+ float32(intercept or 0)",
            "the image is in HU when Modality is CT and a rescale is present",
            "MONOCHROME1: pixels = max(pixels) + min(pixels) - pixels (over all frames, before choosing one)",
            "multi-frame: the middle frame (index frames // 2)",
        ],
        "raster": [
            "PNG/JPEG/TIFF via Pillow, one float32 grey channel in the file's own units (16-bit kept)",
            "palette images expanded through their palette; RGB(A): grey = 0.299 R + 0.587 G + 0.114 B, "
            "alpha dropped; LA: the L channel",
            "raster images are never in HU",
        ],
        "monochrome1_inversion": True,
        "grey_weights": [0.299, 0.587, 0.114],
    }


def _window_rule(window_spec: str) -> dict[str, Any]:
    window = parse_window(window_spec)
    fallback = {"rule": "percentile", "percentiles": list(PERCENTILES),
                "how": "low, high = percentiles of the pixels; width = max(high - low, 1e-6); "
                       "center = low + width / 2"}
    rule: dict[str, Any] = {"spec": window.to_spec(), "min_width": MIN_WIDTH,
                            "apply": "input = clip((float32(pixels) - float32(center - width / 2)) / "
                                     "float32(width), 0, 1)"}
    if window.center is not None and window.width is not None:
        hu = {"rule": "fixed", "center": window.center, "width": window.width}
        if window.name == "manual":
            rule.update(units="the image's own (HU for CT DICOM)", all_images=hu)
        else:
            rule.update(units="HU", hu_images=hu, other_images=fallback)
    elif window.name == "dicom":
        rule.update(rule="dicom", how="the file's first WindowCenter/WindowWidth when both are present and the "
                                      "width is not 0", otherwise=fallback)
    elif window.name == "minmax":
        rule.update(all_images={"rule": "minmax", "how": "low, high = min, max of the pixels; width = "
                                                         "max(high - low, 1e-6); center = low + width / 2"})
    else:
        rule.update(all_images=fallback)
    return rule


def _resize_rule(size: int, mode: str) -> dict[str, Any]:
    how = {
        "pad": "letterbox: a square of side max(h, w) filled with the padding value, the image placed at "
               "((side - h) // 2, (side - w) // 2)",
        "crop": "centre crop: the square of side min(h, w) at ((h - side) // 2, (w - side) // 2)",
        "stretch": "none: the whole image, each axis scaled to size on its own (aspect ratio not kept)",
    }[mode]
    return {"mode": mode, "size": size, "padding_value": 0.0, "how": how,
            "then": "if the side is not size: Pillow Image.fromarray(float32, mode 'F').resize((size, size), "
                    "BILINEAR)", "order": "after windowing (the padding is the window's floor)"}


def preprocessing_contract(card: Any, artifact: dict[str, Any], tta: bool) -> dict[str, Any]:
    """The ``preprocessing.json`` of a model exported from the bundle with card ``card``.

    Parameters
    ----------
    card
        The bundle's `ModelCard`.
    artifact
        What was exported: ``{"format": ..., "file": ..., "runtime": ...}``.
    tta
        Whether the exported graph already averages the image and its left-right mirror.

    Returns
    -------
    dict
        JSON-ready: input/output names and shapes, the steps from file to input, classes,
        positive class, threshold, model id and the name of the copied card.
    """
    prep = card.preprocessing
    size = int(prep.size)
    positive = card.classes[1]
    return {
        "format": CONTRACT_FORMAT,
        "format_version": CONTRACT_VERSION,
        "model_id": card.model_id,
        "model_name": card.model_name,
        "kind": card.kind,
        "artifact": artifact,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, size, size, 1], "range": [0.0, 1.0],
                  "layout": "NHWC, one grey channel"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None],
                   "meaning": f"probability of the positive class {positive!r}"},
        "test_time_augmentation": {"in_graph": bool(tta),
                                   "how": "mean of the image's and its left-right mirror's probability"
                                   if tta else "none"},
        "read": _read_rules(),
        "window": _window_rule(prep.window),
        "resize": _resize_rule(size, prep.resize),
        "classes": list(card.classes),
        "positive": positive,
        "threshold": float(card.threshold),
        "threshold_rule": card.threshold_rule,
        "decision": f"{positive!r} when probability >= threshold, else {card.classes[0]!r}",
        "card": "model_card.json",
    }
