"""Predict image files with a model exported by ``ctviewer export``, without ctviewer.

Usage: python predict_example.py IMAGE [IMAGE ...] [--model FOLDER]

Needs numpy, pydicom (DICOM) and Pillow, and the runtime of the export: TensorFlow
(SavedModel), onnxruntime (ONNX) or ai-edge-litert / TensorFlow (TFLite). It follows
FOLDER/preprocessing.json step by step and prints one line per file: the probability of
the positive class and the class at the model's threshold, as ``ctviewer predict`` does.
(ctviewer copies this file into every export; it imports nothing from ctviewer.)
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

GREY = (0.299, 0.587, 0.114)


def read_pixels(path):
    """(float32 2-D pixels, True when they are HU, DICOM window or None) of an image file."""
    with open(path, "rb") as fh:
        is_dicom = fh.read(132)[128:132] == b"DICM" or Path(path).suffix.lower() in (".dcm", ".dicom")
    if not is_dicom:
        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode in ("LA", "La"):
                im = im.getchannel("L")
            arr = np.asarray(im).astype(np.float32)
        if arr.ndim == 3:  # RGB(A): luma of the colours, alpha dropped
            arr = arr[..., 0] * GREY[0] + arr[..., 1] * GREY[1] + arr[..., 2] * GREY[2]
        return np.ascontiguousarray(arr, dtype=np.float32), False, None
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    pixels = np.asarray(ds.pixel_array)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2", ""):  # colour: ctviewer converts to RGB, then grey
        from pydicom.pixels import apply_color_lut, convert_color_space

        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, ds)
        elif photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        pixels = pixels.astype(np.float32)
        pixels = pixels[..., 0] * GREY[0] + pixels[..., 1] * GREY[1] + pixels[..., 2] * GREY[2]
    pixels = pixels.astype(np.float32)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if pixels.ndim == 3 and frames == 1:
        pixels = pixels[..., 0]
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None or intercept is not None:
        pixels = pixels * np.float32(float(slope) if slope is not None else 1.0) + np.float32(float(intercept or 0))
    is_hu = ds.get("Modality", "") == "CT" and (slope is not None or intercept is not None)
    if photometric == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels
    if pixels.ndim == 3:
        pixels = pixels[pixels.shape[0] // 2]

    def first(value):
        return None if value in (None, "") else float(value[0] if hasattr(value, "__len__") else value)

    window = (first(ds.get("WindowCenter")), first(ds.get("WindowWidth")))
    return pixels, is_hu, window


def choose_window(rule, pixels, is_hu, dicom_window):
    """(center, width) of the contract's window rule for this image."""
    if "all_images" in rule:
        chosen = rule["all_images"]
    elif "hu_images" in rule:
        chosen = rule["hu_images"] if is_hu else rule["other_images"]
    elif dicom_window[0] is not None and dicom_window[1]:
        return dicom_window
    else:
        chosen = rule["otherwise"]
    if chosen["rule"] == "fixed":
        return chosen["center"], chosen["width"]
    if chosen["rule"] == "minmax":
        low, high = float(np.min(pixels)), float(np.max(pixels))
    else:
        low, high = (float(v) for v in np.percentile(pixels, chosen["percentiles"]))
    width = max(high - low, rule["min_width"])
    return low + width / 2.0, width


def preprocess(path, contract):
    """The model input (size, size) float32 in [0, 1] of one file, as the contract says."""
    pixels, is_hu, dicom_window = read_pixels(path)
    center, width = choose_window(contract["window"], pixels, is_hu, dicom_window)
    width = max(float(width), contract["window"]["min_width"])
    x = np.clip((pixels - np.float32(float(center) - width / 2.0)) / np.float32(width), 0.0, 1.0)
    resize = contract["resize"]
    h, w = x.shape
    if resize["mode"] == "stretch":
        pass
    elif resize["mode"] == "crop":
        side = min(h, w)
        x = x[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    elif h != w:
        side = max(h, w)
        canvas = np.full((side, side), resize["padding_value"], dtype=np.float32)
        canvas[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = x
        x = canvas
    if x.shape != (resize["size"],) * 2:
        image = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32), mode="F")
        x = np.asarray(image.resize((resize["size"],) * 2, Image.Resampling.BILINEAR), dtype=np.float32)
    return x.astype(np.float32)


def load_runtime(folder, contract):
    """A function (N, size, size, 1) float32 -> (N,) probabilities, run by the export's own runtime."""
    artifact = contract["artifact"]
    path = str(Path(folder) / artifact["file"])
    if artifact["format"] == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda x: session.run(["probability"], {"image": x})[0]
    if artifact["format"] == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda x: serve(image=tf.constant(x))["probability"].numpy()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return lambda x: runner(image=x)["probability"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", default=str(Path(__file__).resolve().parent),
                        help="the export folder (default: this script's folder)")
    args = parser.parse_args(argv)
    contract = json.loads((Path(args.model) / "preprocessing.json").read_text(encoding="utf-8"))
    run = load_runtime(args.model, contract)
    negative, positive = contract["classes"]
    for path in args.images:
        x = preprocess(path, contract)[None, :, :, None]
        probability = float(run(x)[0])
        label = positive if probability >= contract["threshold"] else negative
        print(f"{path}\t{probability:.8f}\t{label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
