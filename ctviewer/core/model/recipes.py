"""Model builders by name: the default recipe, the question's ``seed`` network, transfer backbones.

Contract (see docs/RECIPE.md):

- input: ``(size, size, 1)`` float32 in [0, 1], the image in the model card's window
  (``TrainConfig.window``, "wide" = HU -1000..1000 by default);
- output: ``(N, 2)`` softmax probabilities, column 1 = positive class;
- labels: sparse integers 0/1 (``sparse_categorical_crossentropy``); one-hot also works
  with the metrics, but the loss compiled here expects sparse ints;
- augmentation lives inside the model and is active only when ``training=True``, so
  ``model(x, training=False)`` / ``model.predict`` are deterministic with BatchNorm and
  Dropout in inference mode.

:func:`build_model` returns an *uncompiled* model; :func:`compile_model` adds optimiser,
schedule, loss and the metrics ``accuracy`` and ``auc``. Import lazily: this module imports
keras at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
from keras import layers

from ctviewer.core.data.imaging import parse_window
from ctviewer.core.errors import ModelError
from ctviewer.core.model import layers as ct_layers
from ctviewer.core.model.config import BACKBONES, MODEL_NAMES, TrainConfig, default_config
from ctviewer.core.model.config import check_model_name as _check_name
from ctviewer.core.model.precision import BF16_POLICY, resolve_precision

# --------------------------------------------------------------------------- recipes (defaults)

# ``CTVIEWER_TRAINING_PATH=before-issue-15``: train as before the speed work (Keras' four
# augmentation layers, Keras' BatchNorm, one traced model per fold), for side-by-side benchmarks only.
TRAINING_PATH_ENV = "CTVIEWER_TRAINING_PATH"


def before_issue_15() -> bool:
    """Whether the benchmark switch asks for the training path of before the speed work."""
    return os.environ.get(TRAINING_PATH_ENV, "").strip().lower() == "before-issue-15"


# --------------------------------------------------------------------------- building


def build_model(config: TrainConfig) -> keras.Model:
    """Build the (uncompiled) model ``config.model`` for inputs ``(config.input_size,) * 2 + (1,)``.

    Raises
    ------
    ModelError
        Unknown model name, input too small for the architecture, or transfer weights
        that cannot be found (offline with no local file).
    """
    name = _check_name(config.model)
    size = int(config.input_size)
    if size < 16:
        raise ModelError(f"input_size {size} is too small; use at least 16 pixels")
    if name == "default":
        arch = DefaultArchitecture() if config.augment else _WITHOUT_AUGMENTATION
        arch = replace(arch, conv_precision=conv_precision_of(config))
        if before_issue_15():
            arch = replace(arch, spatial_augmentation="keras_layers", batch_norm="keras")
        return build_default(size, window=config.window, seed=config.seed, arch=arch)
    if name == "texture":
        from ctviewer.core.model.texture import build_texture

        return build_texture(size, seed=config.seed)
    if name == "seed":
        if _seed_feature_size(size) < 1:
            raise ModelError(f"input_size {size} is too small for the seed network; use at least 22 pixels")
        return build_seed(size)
    return build_transfer(name, size, weights=config.weights, seed=config.seed, augment=config.augment)


def conv_precision_of(config: TrainConfig) -> str:
    """The conv blocks' precision ``build_model(config)`` uses: ``config.precision`` resolved
    (`precision.resolve_precision`), float32 on the before-issue-15 benchmark path."""
    return "float32" if before_issue_15() else resolve_precision(config)


def with_resolved_precision(config: TrainConfig) -> TrainConfig:
    """``config`` with ``precision`` resolved to what its model is built with ("float32"/"bfloat16")."""
    return replace(config, precision=conv_precision_of(config))


@dataclass(frozen=True)
class DefaultArchitecture:
    """Knobs of the default recipe. The field defaults ARE the default recipe; other values
    exist for the ablations in ``bench/recipe_search.py`` (docs/RECIPE.md lists them)."""

    windows: tuple[tuple[float, float], ...] = ((40.0, 400.0), (150.0, 300.0), (-600.0, 1500.0))
    filters: tuple[int, ...] = (16, 32, 64, 64)
    cnn_downsample: int = 1  # average-pool the window channels by this factor before the CNN
    cnn_pooling: str = "none"  # global pooling of the last conv block: "avg", "max", "avgmax" or "none"
    attention_masks: int = 4  # K > 0: the CNN predicts K soft masks; HU histograms inside each are features
    attention_bins: int = 8
    bn_momentum: float = 0.9
    # "fused": the conv blocks' BatchNorm runs TensorFlow's fused kernel (ct_layers.FusedBatchNormalization,
    # same numbers; the recipe's training step ~1.3x cheaper on a CPU); "keras": Keras' own layer (before issue 15).
    batch_norm: str = "fused"
    head: str = "concat"  # "concat": one softmax on all features; "average": one per branch, averaged
    members: int = 3  # > 1: an ensemble of that many networks averaged inside the one model
    histogram: bool = True
    cnn: bool = True
    hist_low_hu: float = -200.0
    hist_high_hu: float = 600.0
    hist_bins: int = 16
    body_threshold_hu: float = -500.0  # histograms count only pixels above this (not air, not most lung)
    dropout: float = 0.5
    l2: float = 1e-3
    flip: bool = True
    rotation: float = 0.03  # fraction of a full turn (about 11 degrees)
    shift: float = 0.05
    zoom: float = 0.1
    jitter_hu: float = 10.0
    jitter_gain: float = 0.02
    # "one_pass": flip, rotation, shift and zoom composed into one resampling (ct_layers.RandomAffine);
    # "keras_layers": Keras' four layers, one resampling each (the recipe until issue 15; 2x slower).
    spatial_augmentation: str = "one_pass"
    # "bfloat16": the conv blocks (conv, BatchNorm, ReLU, pooling, the attention logits) compute in
    # bfloat16 with float32 weights, per layer; everything in HU stays float32 (precision.py says why).
    conv_precision: str = "float32"


# TrainConfig.augment = False: the default recipe with every augmentation layer left out.
_WITHOUT_AUGMENTATION = DefaultArchitecture(flip=False, rotation=0.0, shift=0.0, zoom=0.0, jitter_hu=0.0, jitter_gain=0.0)


def build_default(
    size: int,
    window: str = "wide",
    seed: int | None = 0,
    arch: DefaultArchitecture = DefaultArchitecture(),
) -> keras.Model:
    """The default recipe (docs/RECIPE.md): CNN-attention HU histograms + a global HU histogram.

    input (wide window) -> augmentation (training only) -> HU -> [CNN on 3 HU windows ->
    K soft masks -> HU histogram inside each mask] ++ [HU histogram of the body] -> softmax(2);
    with ``arch.members`` > 1, that many such networks (own weights, own augmentation draws)
    averaged inside the one model.
    """
    center, width = _window_in_hu(window)
    inputs = keras.Input((size, size, 1), name="image")
    if arch.members <= 1:
        return keras.Model(inputs, _default_member(inputs, size, center, width, seed, arch, ""), name="ctviewer_default")
    def member_seed(i: int) -> int | None:
        return None if seed is None else seed * 1000 + i

    outputs = [
        _default_member(inputs, size, center, width, member_seed(i), arch, f"m{i}_") for i in range(arch.members)
    ]
    return keras.Model(inputs, layers.Average(name="probabilities")(outputs), name="ctviewer_default")


def _default_member(
    inputs: Any, size: int, center: float, width: float, seed: int | None, arch: DefaultArchitecture, prefix: str
) -> Any:
    """One network of the default recipe, from the model input to its softmax."""
    x = inputs
    # Spatial augmentation on the windowed image; padding 0 = the window's floor (air in "wide").
    if arch.spatial_augmentation == "one_pass":
        if arch.flip or arch.rotation or arch.shift or arch.zoom:
            x = ct_layers.RandomAffine(arch.flip, arch.rotation, arch.shift, arch.zoom, fill_value=0.0, seed=seed,
                                       name=f"{prefix}aug_affine")(x)
    else:  # "keras_layers": the first recipe's four Keras layers, one resampling each
        x = _keras_spatial_augmentation(x, seed, arch, prefix)
    hu = ct_layers.WindowToHU(center, width, name=f"{prefix}to_hu")(x)
    if arch.jitter_hu or arch.jitter_gain:
        hu = ct_layers.IntensityJitter(arch.jitter_hu, arch.jitter_gain, seed=seed, name=f"{prefix}aug_hu_jitter")(hu)

    features = []
    regulariser = keras.regularizers.L2(arch.l2) if arch.l2 else None
    conv_dtype = _conv_dtype(arch.conv_precision)
    if arch.cnn:
        y = ct_layers.WindowChannels(arch.windows, name=f"{prefix}hu_windows")(hu)
        if arch.cnn_downsample > 1:
            y = layers.AveragePooling2D(arch.cnn_downsample, name=f"{prefix}cnn_downsample")(y)
        for i, filters in enumerate(arch.filters):
            y = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, kernel_regularizer=regulariser, name=f"{prefix}conv{i}",
                dtype=conv_dtype,
            )(y)
            norm = ct_layers.FusedBatchNormalization if arch.batch_norm == "fused" else layers.BatchNormalization
            y = norm(momentum=arch.bn_momentum, name=f"{prefix}bn{i}", dtype=conv_dtype)(y)
            y = layers.Activation("relu", name=f"{prefix}relu{i}", dtype=conv_dtype)(y)
            y = layers.MaxPooling2D(2, name=f"{prefix}pool{i}", dtype=conv_dtype)(y)
        if arch.cnn_pooling in ("avg", "avgmax"):
            features.append(layers.GlobalAveragePooling2D(name=f"{prefix}cnn_avg")(y))
        if arch.cnn_pooling in ("max", "avgmax"):
            features.append(layers.GlobalMaxPooling2D(name=f"{prefix}cnn_max")(y))
        if arch.attention_masks:
            masks = layers.Conv2D(arch.attention_masks, 1, activation="sigmoid", name=f"{prefix}attention_logits",
                                  dtype=conv_dtype)(y)
            if conv_dtype is not None:  # the masks weight HU votes: back to float32 before anything else
                masks = layers.Activation("linear", name=f"{prefix}attention_float32", dtype="float32")(masks)
            factor, remainder = divmod(size, int(masks.shape[1]))
            if remainder:  # input size not a multiple of 2**blocks: resize to the exact size
                masks = layers.Resizing(size, size, "bilinear", name=f"{prefix}attention_masks")(masks)
            elif factor > 1:
                masks = layers.UpSampling2D(factor, interpolation="bilinear", name=f"{prefix}attention_masks")(masks)
            histograms = ct_layers.MaskedSoftHistogram(
                arch.hist_low_hu, arch.hist_high_hu, arch.attention_bins, arch.body_threshold_hu,
                name=f"{prefix}attention_histograms",
            )([hu, masks])
            features.append(
                layers.BatchNormalization(momentum=arch.bn_momentum, name=f"{prefix}attention_features")(histograms)
            )
    if arch.histogram:
        h = ct_layers.SoftHistogram(
            arch.hist_low_hu, arch.hist_high_hu, arch.hist_bins, arch.body_threshold_hu, name=f"{prefix}hu_histogram"
        )(hu)
        features.append(layers.BatchNormalization(momentum=arch.bn_momentum, name=f"{prefix}histogram_features")(h))
    if not features:
        raise ModelError("the default architecture needs the CNN branch, the histogram branch or both")
    name = f"{prefix}probabilities" if prefix else "probabilities"
    if arch.head == "average" and len(features) > 1:
        # One softmax head per branch, averaged: the histogram branch stays a classifier of its
        # own (few inputs) instead of being outvoted by the larger CNN feature set.
        cnn_part = features[:-1] if arch.histogram else features
        groups = [cnn_part[0] if len(cnn_part) == 1 else layers.Concatenate(name=f"{prefix}cnn_features")(cnn_part)]
        if arch.histogram:
            groups.append(features[-1])
        heads = []
        for i, group in enumerate(groups):
            if arch.dropout:
                group = layers.Dropout(arch.dropout, seed=seed, name=f"{prefix}dropout{i}")(group)
            heads.append(
                layers.Dense(2, activation="softmax", kernel_regularizer=regulariser, name=f"{prefix}head{i}")(group)
            )
        return heads[0] if len(heads) == 1 else layers.Average(name=name)(heads)
    z = features[0] if len(features) == 1 else layers.Concatenate(name=f"{prefix}features")(features)
    if arch.dropout:
        z = layers.Dropout(arch.dropout, seed=seed, name=f"{prefix}dropout")(z)
    return layers.Dense(2, activation="softmax", kernel_regularizer=regulariser, name=name)(z)


def _conv_dtype(conv_precision: str) -> Any:
    """The ``dtype`` argument of a conv-block layer: None (the float32 default) or the bfloat16 policy.

    Per layer, never a global policy: the HU layers and the augmentation must stay float32.
    """
    if conv_precision == "float32":
        return None
    if conv_precision == "bfloat16":
        return keras.DTypePolicy(BF16_POLICY)
    raise ModelError(f"unknown conv_precision {conv_precision!r}; use 'float32' or 'bfloat16'")


def _keras_spatial_augmentation(x: Any, seed: int | None, arch: DefaultArchitecture, prefix: str) -> Any:
    if arch.flip:
        x = layers.RandomFlip("horizontal", seed=seed, name=f"{prefix}aug_flip")(x)
    if arch.rotation:
        x = layers.RandomRotation(
            arch.rotation, fill_mode="constant", fill_value=0.0, seed=seed, name=f"{prefix}aug_rotate"
        )(x)
    if arch.shift:
        x = layers.RandomTranslation(
            arch.shift, arch.shift, fill_mode="constant", fill_value=0.0, seed=seed, name=f"{prefix}aug_shift"
        )(x)
    if arch.zoom:
        x = layers.RandomZoom(arch.zoom, fill_mode="constant", fill_value=0.0, seed=seed, name=f"{prefix}aug_zoom")(x)
    return x


def _window_in_hu(window: str) -> tuple[float, float]:
    parsed = parse_window(window)
    if parsed.center is None or parsed.width is None:
        raise ModelError(
            f"the default model needs a fixed HU window (e.g. 'wide'), not the data-driven {parsed.name!r}"
        )
    return parsed.center, parsed.width


def _seed_feature_size(size: int) -> int:
    """Side of the seed network's last feature map (valid 3x3 convs, 2x2 pools)."""
    for _ in range(3):
        size = (size - 2) // 2
        if size < 1:
            return 0
    return size


def build_seed(size: int) -> keras.Model:
    """The question's network, unchanged: 3 x [Conv 32 3x3 relu, BN, MaxPool], Flatten,
    Dropout 0.7, Dense 16/8/4 relu each followed by BN, Dense 2 softmax."""
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for i in range(3):
        x = layers.Conv2D(32, 3, activation="relu", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.7, name="dropout")(x)
    for units in (16, 8, 4):
        x = layers.Dense(units, activation="relu", name=f"dense{units}")(x)
        x = layers.BatchNormalization(name=f"dense{units}_bn")(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="ctviewer_seed")


# --------------------------------------------------------------------------- transfer learning


@dataclass(frozen=True)
class ImagenetWeights:
    """A backbone's ImageNet no-top weights file as published for keras.applications."""

    file_name: str  # the name Keras caches it under, in `keras_cache_dir()`
    url: str
    md5: str  # as listed in keras.applications


@dataclass(frozen=True)
class _Backbone:
    factory: Callable[..., keras.Model]
    input_mode: str  # GreyToBackboneInput mode
    weights: ImagenetWeights


_BACKBONE_SPECS: dict[str, _Backbone] = {
    "efficientnetb0": _Backbone(
        keras.applications.EfficientNetB0,
        "efficientnet",
        ImagenetWeights(
            "efficientnetb0_notop.h5",
            "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
            "50bc09e76180e00e4465e1a485ddc09d",
        ),
    ),
    "resnet50": _Backbone(
        keras.applications.ResNet50,
        "caffe",
        ImagenetWeights(
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "4d473c1dd8becc155b73f8504c6f6626",
        ),
    ),
    "densenet121": _Backbone(
        keras.applications.DenseNet121,
        "torch",
        ImagenetWeights(
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "30ee3e1110167f948a6b9946edeeb738",
        ),
    ),
}


def imagenet_weights(name: str) -> ImagenetWeights:
    """The published ImageNet weights file (name, URL, MD5) of transfer backbone ``name``.

    Parameters
    ----------
    name : str
        One of :data:`BACKBONES` (case and surrounding spaces ignored).

    Returns
    -------
    ImagenetWeights
        ``keras_cache_dir() / result.file_name`` is where Keras keeps it once downloaded.

    Raises
    ------
    ModelError
        If ``name`` is not a transfer backbone.
    """
    key = _check_name(name)
    if key not in _BACKBONE_SPECS:
        raise ModelError(f"{name!r} is not a transfer backbone; use one of {', '.join(BACKBONES)}")
    return _BACKBONE_SPECS[key].weights


# Set (to 1) by ``--allow-download``: without it ctviewer never opens a network connection.
ALLOW_DOWNLOAD_ENV = "CTVIEWER_ALLOW_DOWNLOAD"


def downloads_allowed() -> bool:
    """Whether ImageNet weights may be fetched from the network (``$CTVIEWER_ALLOW_DOWNLOAD`` set to 1)."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def resolve_weights(name: str, weights: str | None) -> str | None:
    """Turn ``config.weights`` into a local file path for backbone ``name`` (None = random init).

    ``"imagenet"`` looks in the Keras cache first, then, only when `downloads_allowed`,
    downloads into it; a path must exist.

    Raises
    ------
    ModelError
        A given file does not exist, or "imagenet" is not cached and downloads are not
        allowed (the message says which file to put where) or fail.
    """
    spec = _BACKBONE_SPECS[name].weights
    if weights is None or str(weights).strip() == "":
        return None
    if str(weights).strip().lower() != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelError(
                f"{path}: ImageNet weights file for {name} not found; download {spec.url} "
                f"and pass its path (--weights PATH), or put it in {keras_cache_dir()}"
            )
        return str(path)
    cached = keras_cache_dir() / spec.file_name
    if cached.is_file():
        return str(cached)
    if not downloads_allowed():
        raise ModelError(
            f"ImageNet weights for {name} are not on this machine: download {spec.url} and put it in "
            f"{keras_cache_dir()} (as {spec.file_name}), or pass its path with --weights PATH; or let ctviewer "
            "download it with --allow-download. No network connection was made."
        )
    try:
        downloaded = keras.utils.get_file(
            spec.file_name,
            spec.url,
            cache_dir=str(keras_cache_dir().parent),
            cache_subdir="models",
            file_hash=spec.md5,
        )
    except Exception as exc:  # noqa: BLE001 - urllib/socket/hash errors all mean "not available"
        raise ModelError(
            f"cannot get ImageNet weights for {name}: not in the Keras cache ({cached}) and the download "
            f"failed: {str(exc).strip()[:220]}. Download {spec.url} on a machine that is "
            f"online and either copy it to {cached} or pass its path with --weights PATH "
            f"(TrainConfig.weights)."
        ) from None
    return str(downloaded)


def build_transfer(name: str, size: int, weights: str | None = "imagenet", seed: int | None = 0,
                   augment: bool = True) -> keras.Model:
    """A keras.applications backbone (frozen) + dropout + softmax(2) head.

    The grey input is repeated to 3 channels and scaled as the backbone expects, inside
    the model. ``weights``: a local ``.h5`` / ``.weights.h5`` file of the no-top backbone,
    ``"imagenet"`` (Keras cache, else download), or None for random initialisation.
    """
    name = _check_name(name)
    if name not in _BACKBONE_SPECS:
        raise ModelError(f"{name!r} is not a transfer backbone; use one of {', '.join(BACKBONES)}")
    if size < 32:
        raise ModelError(f"input_size {size} is too small for {name}; use at least 32 pixels")
    spec = _BACKBONE_SPECS[name]
    weights_path = resolve_weights(name, weights)
    try:
        backbone = spec.factory(include_top=False, weights=weights_path, input_shape=(size, size, 3), pooling="avg")
    except (ValueError, OSError) as exc:
        raise ModelError(f"{weights_path}: cannot load as {name} ImageNet weights ({str(exc)[:200]})") from None
    backbone.trainable = False  # 100 images: train the head only; frozen BN stays in inference mode
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    if augment:
        x = layers.RandomFlip("horizontal", seed=seed, name="aug_flip")(x)
        x = layers.RandomRotation(0.03, fill_mode="constant", fill_value=0.0, seed=seed, name="aug_rotate")(x)
    x = ct_layers.GreyToBackboneInput(spec.input_mode, name="to_backbone_input")(x)
    x = backbone(x, training=False)
    x = layers.Dropout(0.3, seed=seed, name="dropout")(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"ctviewer_{name}")


# --------------------------------------------------------------------------- compiling


# Label smoothing per recipe (TrainConfig has no field for it: it is part of the recipe, not a knob
# users turn). The seed model keeps the question's plain cross-entropy.
LABEL_SMOOTHING: dict[str, float] = {"default": 0.0}


def compile_model(
    model: keras.Model, config: TrainConfig, steps_per_epoch: int, label_smoothing: float | None = None
) -> keras.Model:
    """Compile ``model`` with the recipe in ``config``; returns the same model.

    Optimiser ``adam`` / ``adamw`` (decoupled ``weight_decay``) / ``sgd`` (momentum 0, as in
    the question); ``cosine`` decays the learning rate to 0 over ``epochs * steps_per_epoch``
    steps. Loss: sparse categorical cross-entropy (labels are ints 0/1). Metrics: ``accuracy``
    and ``auc`` (ROC AUC of column 1), so Keras logs ``val_accuracy`` / ``val_auc``.
    """
    steps = max(1, int(steps_per_epoch)) * max(1, int(config.epochs))
    lr: Any = float(config.learning_rate)
    if config.schedule == "cosine":
        lr = ct_layers.AdjustableCosineDecay(lr, decay_steps=steps)
    elif config.schedule != "constant":
        raise ModelError(f"unknown schedule {config.schedule!r}; use 'cosine' or 'constant'")
    decay = float(config.weight_decay) or None
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr)
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=decay or 0.0)
    elif config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, weight_decay=decay)
    else:
        raise ModelError(f"unknown optimizer {config.optimizer!r}; use 'adam', 'adamw' or 'sgd'")
    smoothing = LABEL_SMOOTHING.get(config.model, 0.0) if label_smoothing is None else float(label_smoothing)
    loss: Any = (
        ct_layers.SmoothedSparseCrossentropy(smoothing) if smoothing else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"), ct_layers.PositiveClassAUC(name="auc")],
    )
    # Keras builds the optimiser's slots inside the first trace of the train step when no strategy was set;
    # tf.function then traces the whole step a second time, without creating variables. Built here, the
    # step is traced once: the first batch comes ~2x sooner (4.7 s against 9-10 s single-threaded at 128 px).
    # The before-issue-15 benchmark path keeps the double trace it had.
    if not model.optimizer.built and not before_issue_15():
        model.optimizer.build(model.trainable_variables)
    return model


def set_schedule_steps(model: keras.Model, steps_per_epoch: int, epochs: int) -> None:
    """Point a compiled model's cosine schedule at ``epochs * steps_per_epoch`` steps (no retrace).

    A no-op for constant learning rates.
    """
    schedule = getattr(model.optimizer, "_learning_rate", None)
    if isinstance(schedule, ct_layers.AdjustableCosineDecay):
        schedule.set_decay_steps(max(1, int(steps_per_epoch)) * max(1, int(epochs)))


def config_for(name: str, **overrides: Any) -> TrainConfig:
    """``default_config(name)`` with some fields replaced (None values are ignored)."""
    return default_config(name).with_overrides(**overrides)


__all__ = [
    "BACKBONES",
    "MODEL_NAMES",
    "DefaultArchitecture",
    "ImagenetWeights",
    "build_default",
    "build_model",
    "build_seed",
    "build_transfer",
    "compile_model",
    "config_for",
    "conv_precision_of",
    "default_config",
    "imagenet_weights",
    "keras_cache_dir",
    "resolve_weights",
    "set_schedule_steps",
    "with_resolved_precision",
]
