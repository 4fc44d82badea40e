"""Grad-CAM: where in the image the model looked for its positive-class score.

Works for any Keras model with a 2-D convolution, including convolutions inside a nested
backbone (``keras.applications`` models used as a layer) or inside an ensemble's members:
instead of rebuilding the graph up to an inner layer (impossible in general for nested
models), the chosen layer's ``call`` is wrapped for the duration of one forward pass so
that its output is recorded on the gradient tape.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from ctviewer.core.errors import ModelError

# A convolution with one of these activations makes gates or masks (values in [0, 1] that
# select pixels), not feature maps: Grad-CAM's channel weights do not apply to it, and on
# ctviewer's default recipe its map is often empty.
_GATE_ACTIVATIONS = ("sigmoid", "softmax", "hard_sigmoid")
# Parallel branches explained one by one and averaged: ensemble members built in one model
# (models.build_default: m0_, m1_, ...) and the texture recipe's random networks (n0_, h0_, ...).
_MEMBER_PREFIX = re.compile(r"^([mnh]\d+_)")


def _walk(layer: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every layer in order, depth first, with a "outer/inner" path name."""
    for sub in getattr(layer, "layers", []):
        path = f"{prefix}{sub.name}"
        yield path, sub
        yield from _walk(sub, path + "/")


def conv_layers(model: Any) -> list[tuple[str, Any]]:
    """All 2-D convolution layers (plain, depthwise, separable) with their path names, in graph order."""
    import keras

    conv_types = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    return [(path, layer) for path, layer in _walk(model) if isinstance(layer, conv_types)]


def _is_gate(layer: Any) -> bool:
    return getattr(getattr(layer, "activation", None), "__name__", "") in _GATE_ACTIVATIONS


def feature_convs(model: Any) -> list[tuple[str, Any]]:
    """The 2-D convolutions that make feature maps (not sigmoid/softmax gates); all of them
    when every one is a gate."""
    convs = conv_layers(model)
    if not convs:
        raise ModelError(f"model {model.name!r} has no 2-D convolution layer: Grad-CAM needs one")
    return [(path, layer) for path, layer in convs if not _is_gate(layer)] or convs


def default_layers(model: Any) -> list[str]:
    """What Grad-CAM explains by default: the last feature convolution, or for parallel branches
    (ensemble members ``m0_...``, the texture recipe's networks ``n0_...``/``h0_...``) the last one of each."""
    last_of: dict[str, str] = {}
    for path, layer in feature_convs(model):
        match = _MEMBER_PREFIX.match(layer.name)
        last_of[match.group(1) if match else ""] = path
    if len(last_of) > 1 and "" not in last_of:
        return list(last_of.values())
    return [feature_convs(model)[-1][0]]


def find_layer(model: Any, layer_name: str | None = None) -> tuple[str, Any]:
    """The named layer (by name or "outer/inner" path), or the last feature convolution."""
    if layer_name is None:
        return feature_convs(model)[-1]
    for path, layer in _walk(model):
        if layer_name in (path, layer.name):
            return path, layer
    raise ModelError(f"model {model.name!r} has no layer named {layer_name!r}")


def grad_cam(model: Any, image: np.ndarray, layer_name: str | None = None, class_index: int = 1) -> np.ndarray:
    """Grad-CAM heatmap of ``class_index`` (default: the positive class) for one image.

    Parameters
    ----------
    model
        A ``keras.Model`` with (N, 2) output, or anything with a ``.model`` (bundle,
        trained model, ensemble).
    image
        One preprocessed image, (H, W) or (H, W, 1), at the model's input size.
    layer_name
        Layer to explain (name or "outer/inner" path); default the last 2-D convolution.
    class_index
        Output column whose score is explained.

    Returns
    -------
    numpy.ndarray
        (H, W) float32 in [0, 1] (all zeros when no region raises the score). For an
        ensemble (and no ``layer_name``), the normalised mean of its members' maps.
    """
    model = getattr(model, "model", model)
    if layer_name is not None:
        return _grad_cam_single(model, image, layer_name, class_index)
    members = ensemble_members(model)
    if members:
        # An ensemble looks with each member's eyes: average the members' maps.
        return _normalised_mean([grad_cam(member, image, None, class_index) for member in members])
    layers = default_layers(model)
    if len(layers) > 1:
        return _normalised_mean([_grad_cam_single(model, image, name, class_index) for name in layers])
    return _grad_cam_single(model, image, layers[0], class_index)


def normalise_heatmap(heat: np.ndarray) -> np.ndarray:
    """Scale a non-negative heat map to a maximum of 1, as float32 in [0, 1].

    A map with no positive (or no finite) maximum becomes all zeros: no region raised the score.
    This is the one place maps are scaled; `grad_cam` returns maps already scaled by it.
    """
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(heat.max()) if heat.size else 0.0
    if top <= 0.0:
        return np.zeros(heat.shape, dtype=np.float32)
    return np.clip(heat / top, 0.0, 1.0).astype(np.float32)


def _normalised_mean(maps: list[np.ndarray]) -> np.ndarray:
    return normalise_heatmap(np.mean(maps, axis=0))


def ensemble_members(model: Any) -> list[Any]:
    """The member models of a ctviewer ensemble (outputs averaged by ``mean_probabilities``), else []."""
    from ctviewer.core.model.members import shared_features

    names = {layer.name for layer in getattr(model, "layers", [])}
    if "mean_probabilities" not in names or shared_features(model) is not None:
        return []  # members that share one feature trunk are explained through it, as one model
    return [layer for layer in model.layers if getattr(layer, "layers", None) and conv_layers(layer)]


def _grad_cam_single(model: Any, image: np.ndarray, layer_name: str | None, class_index: int) -> np.ndarray:
    import tensorflow as tf

    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"expected one image (H, W) or (H, W, 1), got shape {np.shape(image)}")
    expected = tuple(model.input_shape[1:3])
    if x.shape != expected:
        raise ModelError(f"image is {x.shape[0]}x{x.shape[1]} px but the model expects {expected[0]}x{expected[1]}")
    _, layer = find_layer(model, layer_name)

    captured: dict[str, Any] = {}
    original_call = layer.call
    with tf.GradientTape() as tape:

        def recording_call(*args: Any, **kwargs: Any) -> Any:
            out = original_call(*args, **kwargs)
            tape.watch(out)
            captured["activations"] = out
            return out

        layer.call = recording_call
        try:
            scores = model(tf.constant(x[None, ..., None]), training=False)
        finally:
            del layer.call  # back to the class's method
        score = scores[:, class_index]
    if "activations" not in captured:
        raise ModelError(f"layer {layer.name!r} was not used by the forward pass")
    activations = captured["activations"]
    grads = tape.gradient(score, activations)
    if grads is None:
        raise ModelError(f"the score does not depend on layer {layer.name!r}")
    # A bfloat16 conv layer (TrainConfig.precision) gives bfloat16 maps; the map is summed in float32.
    activations, grads = tf.cast(activations, tf.float32), tf.cast(grads, tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per feature map
    cams = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
    # A model that averages an image with its mirror (MirrorBatch) runs both in one batch:
    # the mirror's map, flipped back, counts as much as the image's own.
    cam = (cams[0] + cams[1][:, ::-1]) / 2.0 if cams.shape[0] == 2 else cams[0]
    cam = tf.image.resize(cam[..., None], x.shape, method="bilinear")[..., 0].numpy().astype(np.float32)
    return normalise_heatmap(cam)


def overlay_rgb(image: np.ndarray, heat: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """The image in grey with the heat map on top in warm colours, as (H, W, 3) uint8.

    ``image`` is what the model saw (values in [0, 1]); ``heat`` a Grad-CAM map of the same
    shape in [0, 1]. Cold areas stay grey: the colour's weight grows with the squared heat.
    """
    grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if grey.shape != heat.shape:
        raise ValueError(f"image {grey.shape} and heat map {heat.shape} differ in shape")
    # red for warm, yellow for the hottest (white would vanish on bone)
    colour = np.stack([np.ones_like(heat), np.clip(2 * heat - 1, 0, 1), np.zeros_like(heat)], axis=-1)
    # Squared: faint evidence spread over the body must not tint the whole image.
    weight = (float(np.clip(opacity, 0.0, 1.0)) * heat**2)[..., None]
    rgb = grey[..., None] * (1 - weight) + colour * weight
    return np.round(rgb * 255).astype(np.uint8)
