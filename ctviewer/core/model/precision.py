"""The compute precision of the default recipe's conv blocks: float32, or bfloat16 where the CPU has it.

A CPU with native bfloat16 arithmetic (``avx512_bf16``, or AMX with ``amx_bf16``) runs
oneDNN's convolutions about twice as fast in bfloat16 as in float32, and the conv blocks
are most of a training step (issue 15, BENCHMARKS.md). ``TrainConfig.precision`` "auto"
picks bfloat16 there, and float32 on every other CPU (where bfloat16 is emulated and
slower) and whenever a GPU is in use (where today's float32 path is kept). Only the conv
blocks change: the layers that work in Hounsfield units stay float32, since bfloat16 has
only 8 bits of mantissa (steps of 2-4 HU at 250-600 HU, the range contrast is read in).

``$CTVIEWER_CONV_PRECISION`` (float32, bfloat16 or auto) overrides the config, for
side-by-side benchmarks. Imports nothing heavy until a GPU check needs TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctviewer.core.errors import ModelError
from ctviewer.core.model.config import check_model_name

if TYPE_CHECKING:
    from ctviewer.core.model.config import TrainConfig

PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")
PRECISION_ENV = "CTVIEWER_CONV_PRECISION"
CPUINFO = Path("/proc/cpuinfo")
# Either flag means the CPU multiplies bfloat16 natively (AVX-512 BF16 on Zen 4 / Cooper Lake,
# AMX tiles on Sapphire Rapids and later); without them oneDNN emulates it, slower than float32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# The Keras policy of the bfloat16 conv layers: bfloat16 arithmetic, float32 weights.
BF16_POLICY = "mixed_bfloat16"


def read_cpu_flags(path: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags listed in ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (see `NATIVE_BF16_FLAGS`)."""
    return bool(read_cpu_flags() & NATIVE_BF16_FLAGS)


def gpu_in_use() -> bool:
    """Whether TensorFlow places work on a GPU in this process."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def check_precision(value: str, where: str = "precision") -> str:
    """``value`` lower-cased if it is one of `PRECISIONS`; `ModelError` otherwise."""
    key = str(value).strip().lower()
    if key not in PRECISIONS:
        raise ModelError(f"unknown {where} {value!r}; use one of {', '.join(PRECISIONS)}")
    return key


def requested_precision(config: TrainConfig) -> str:
    """``$CTVIEWER_CONV_PRECISION`` when set, else ``config.precision`` (checked, not resolved)."""
    override = os.environ.get(PRECISION_ENV, "").strip()
    if override:
        return check_precision(override, f"${PRECISION_ENV}")
    return check_precision(config.precision)


def resolve_precision(config: TrainConfig) -> str:
    """The conv blocks' precision a model of ``config`` is built with: "float32" or "bfloat16".

    Only the default recipe has a bfloat16 path; every other model is float32. "auto" means
    bfloat16 when the CPU has it natively and no GPU is in use.
    """
    requested = requested_precision(config)
    if check_model_name(config.model) != "default":
        return "float32"
    if requested != "auto":
        return requested
    return "bfloat16" if cpu_has_native_bf16() and not gpu_in_use() else "float32"


def model_conv_precision(model: Any) -> str:
    """"bfloat16" if any layer of ``model`` (nested models included) computes in bfloat16, else "float32"."""
    pending = [model]
    while pending:
        layer = pending.pop()
        if getattr(layer, "compute_dtype", "float32") == "bfloat16":
            return "bfloat16"
        pending.extend(getattr(layer, "layers", []))
    return "float32"


def float32_twin(model: Any) -> Any:
    """A copy of ``model`` with every bfloat16 layer computing in float32, same weights (they are float32).

    For runtimes without bfloat16 kernels (onnxruntime's CPU convolutions, LiteRT): the twin
    differs from the bfloat16 model only by bfloat16's rounding.
    """
    import keras

    def to_float32(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and node.get("config", {}).get("name") == BF16_POLICY:
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: to_float32(value) for key, value in node.items()}
        if isinstance(node, list):
            return [to_float32(value) for value in node]
        return node

    config = to_float32(keras.saving.serialize_keras_object(model))
    twin = keras.saving.deserialize_keras_object(config, safe_mode=True)
    twin.set_weights(model.get_weights())
    if model_conv_precision(twin) != "float32":
        raise ModelError("could not turn the model's bfloat16 layers into float32 ones")
    return twin
