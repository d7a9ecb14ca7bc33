"""The vector field type shared by wire records.

A vector is held as a tuple of float32-representable floats (so records stay
frozen, hashable and comparable) and travels on the wire as little-endian
float32 bytes (4 bytes a dimension instead of ~9 for msgpack floats).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, PlainSerializer, SerializationInfo

MAX_DIM = 65_536


def coerce_vector(value: Any) -> tuple[float, ...]:
    """Turns a list, tuple, numpy array or float32 bytes into a finite float32 tuple.

    Raises:
        ValueError: the vector is empty, too long, not finite or not one-dimensional.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) % 4:
            raise ValueError("vector bytes length is not a multiple of 4 (float32)")
        arr = np.frombuffer(value, dtype="<f4")
    else:
        try:
            arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"vector is not numeric: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"vector must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("vector is empty")
    if arr.size > MAX_DIM:
        raise ValueError(f"vector has {arr.size} dimensions, more than {MAX_DIM}")
    if not np.isfinite(arr).all():
        raise ValueError("vector contains NaN or infinity")
    return tuple(arr.tolist())


def coerce_matrix(value: Any) -> tuple[tuple[float, ...], ...]:
    """Like :func:`coerce_vector` for a sequence of equal-length vectors (may be empty)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 2:
            raise ValueError(f"matrix must be two-dimensional, got shape {value.shape}")
        rows: list[Any] = list(value)
    elif isinstance(value, list | tuple):
        rows = list(value)
    else:
        raise ValueError(f"matrix must be a sequence of vectors, got {type(value).__name__}")
    out = tuple(coerce_vector(r) for r in rows)
    if out and len({len(r) for r in out}) != 1:
        raise ValueError("matrix rows have different lengths")
    return out


def _serialize_vector(value: tuple[float, ...], info: SerializationInfo) -> Any:
    if info.mode == "json":
        return list(value)
    return np.asarray(value, dtype="<f4").tobytes()


def _serialize_matrix(value: tuple[tuple[float, ...], ...], info: SerializationInfo) -> Any:
    if info.mode == "json":
        return [list(v) for v in value]
    return [np.asarray(v, dtype="<f4").tobytes() for v in value]


Vector = Annotated[
    tuple[float, ...],
    BeforeValidator(coerce_vector),
    PlainSerializer(_serialize_vector),
]
"""A finite float32 vector; bytes on the wire, a list in JSON."""

Matrix = Annotated[
    tuple[tuple[float, ...], ...],
    BeforeValidator(coerce_matrix),
    PlainSerializer(_serialize_matrix),
]
"""Rows of equal-length finite float32 vectors."""


def to_array(
    value: tuple[float, ...] | tuple[tuple[float, ...], ...], dim: int | None = None
) -> np.ndarray:
    """A float32 numpy copy of a vector or matrix field (2-D ``(0, dim)`` for an empty matrix)."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.size == 0 and dim is not None:
        return np.zeros((0, dim), dtype=np.float32)
    return arr
