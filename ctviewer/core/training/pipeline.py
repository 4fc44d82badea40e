"""Preprocessed images into ``tf.data``: from the on-disk cache, stacked in memory or streamed.

TensorFlow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset, iter_arrays
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.errors import DatasetError, ImageReadError
from ctviewer.core.events import EventCallback, StopCheck

# Above this many bytes of preprocessed images, training streams them from disk.
IN_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024



@dataclass
class PreprocessedImages:
    """Preprocessed images of a dataset, as `make_tf_dataset` reads them.

    Attributes
    ----------
    files : list of str
        One ``.npy`` file per image (the cache's arrays), read memory-mapped when streaming;
        may be empty when ``stacked`` is given.
    stacked : numpy.ndarray or None
        All images as one ``(n, size, size)`` float32 array, or None to stream from ``files``.
    size : int
        Side of the square images in pixels.
    """

    files: list[str]
    stacked: np.ndarray | None
    size: int
    tensor: Any = None  # ``stacked`` as one TF tensor, made once and shared by the train/validation pipelines

    def as_tensor(self) -> Any:
        import tensorflow as tf

        if self.tensor is None:
            self.tensor = tf.constant(self.stacked)
        return self.tensor


def _load_images(dataset: Dataset, prep: Preprocessing, cache: Cache, on_event: EventCallback | None,
                 should_stop: StopCheck | None, stream: bool | None) -> PreprocessedImages:
    """Preprocess every image into the cache once (so epochs only read), then stack if small."""
    n = len(dataset)
    nbytes = n * prep.size * prep.size * 4
    if stream is None:
        stream = nbytes > IN_MEMORY_LIMIT_BYTES
    has_files = hasattr(cache, "array_path") and hasattr(cache, "arrays_dir")
    stream = stream and has_files
    files: list[str] = []
    stacked = None if stream else np.empty((n, prep.size, prep.size), dtype=np.float32)
    try:
        for i, item, arr in iter_arrays(dataset, prep, cache, on_event, should_stop):
            if stacked is not None:
                stacked[i] = arr
            if has_files:
                files.append(str(cache.array_path(cache.inspect(item.path).content_hash, prep)))
    except ImageReadError as exc:
        raise DatasetError(f"{exc.path}: {exc.reason}") from None
    return PreprocessedImages(files=files, stacked=stacked, size=prep.size)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """n / (2 n_c): each class contributes equally to the loss."""
    counts = np.bincount(y, minlength=2).astype(np.float64)
    return {c: (len(y) / (2.0 * counts[c]) if counts[c] else 0.0) for c in (0, 1)}


def make_tf_dataset(images: PreprocessedImages, indices: np.ndarray, y: np.ndarray, batch_size: int,
                    shuffle: bool = False, seed: int = 0, weights: dict[int, float] | None = None) -> Any:
    """A ``tf.data.Dataset`` of ``(x, y[, w])`` batches over ``indices``.

    Shuffling permutes indices only (the same order for the in-memory and streamed paths);
    streamed images are read from their memory-mapped cache files by a ``numpy_function``,
    so only the batches in flight are in memory.
    """
    import tensorflow as tf

    idx = tf.data.Dataset.from_tensor_slices(np.asarray(indices, dtype=np.int64))
    if shuffle:
        idx = idx.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    labels = tf.constant(np.asarray(y, dtype=np.int32))
    size = images.size
    if images.stacked is not None:
        pixels = images.as_tensor()

        def image_of(i: Any) -> Any:
            return tf.gather(pixels, i)[..., None]
    else:
        files = list(images.files)

        def read(i: np.ndarray) -> np.ndarray:
            return np.asarray(np.load(files[int(i)], mmap_mode="r"), dtype=np.float32)[..., None]

        def image_of(i: Any) -> Any:
            x = tf.numpy_function(read, [i], tf.float32, stateful=False)
            x.set_shape((size, size, 1))
            return x

    if weights is not None:
        wtable = tf.constant([weights[0], weights[1]], dtype=tf.float32)
        ds = idx.map(lambda i: (image_of(i), tf.gather(labels, i), tf.gather(wtable, tf.gather(labels, i))),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = idx.map(lambda i: (image_of(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)
    return ds.batch(batch_size).prefetch(2)


def _full_labels(dataset: Dataset) -> np.ndarray:
    return dataset.y.astype(np.int32)

