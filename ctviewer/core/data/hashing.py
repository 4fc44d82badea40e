"""Digests of the data path: what a file, its pixels and its cached arrays are, in 32 hex digits.

BLAKE3 (128-bit output) rather than hashlib's BLAKE2b: on the 2-core AMD EPYC it hashes 7-8 GB/s
against 1 GB/s, so the two digests a cold load makes per file besides the file's own (its stored
pixels, its preprocessed array) cost ~0.2 ms at 512 px instead of ~1.6 ms, about what the plain
pydicom loop spends on that file's whole read-decode-window (BENCHMARKS.md, "cold load"). Still
a cryptographic hash: two different images do not share a digest by accident.

A file's own content hash stays BLAKE2b (`cache.content_hash`): saved models list their training
images by it, and a new scheme would hide the overlap of old bundles with the images they were
trained on.
"""

from __future__ import annotations

from blake3 import blake3

DIGEST_BYTES = 16


def digest(*parts: bytes | bytearray | memoryview | str) -> str:
    """Hex digest of the parts in order: text as UTF-8, a buffer (an array's ``.data``) as its raw bytes."""
    h = blake3()
    for part in parts:
        # blake3 takes only byte buffers: view an int16 or float32 array's memory as its bytes.
        h.update(part.encode() if isinstance(part, str) else memoryview(part).cast("B"))
    return h.hexdigest(length=DIGEST_BYTES)
