"""The vector and matrix field types shared by wire records.

A vector is held as a tuple of float32-representable floats (so records stay
frozen, hashable and comparable); a matrix (a class's exemplars and
sub-prototypes) as :class:`Rows`, one read-only float32 array, since a tuple
of Python floats costs 32 bytes a value instead of 4. Both travel on the wire
as little-endian float32 bytes (4 bytes a dimension instead of ~9 for msgpack
floats), a matrix as one byte string per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any, overload

import numpy as np
from pydantic import BeforeValidator, GetCoreSchemaHandler, PlainSerializer, SerializationInfo
from pydantic_core import core_schema

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


def coerce_matrix(value: Any) -> Rows:
    """Like :func:`coerce_vector` for a sequence of equal-length vectors (may be empty).

    Rows (already checked and immutable) are returned as they are.
    """
    if isinstance(value, Rows):
        return value
    if isinstance(value, np.ndarray):
        if value.ndim != 2:
            raise ValueError(f"matrix must be two-dimensional, got shape {value.shape}")
        if value.size and value.shape[1] <= MAX_DIM and value.dtype.kind in "fiu":
            with np.errstate(over="ignore"):  # an overflow is reported as not finite
                arr = value.astype(np.float32, copy=False)
            if not np.isfinite(arr).all():
                raise ValueError("vector contains NaN or infinity")
            return Rows(arr)
        rows: list[Any] = list(value)
    elif isinstance(value, list | tuple):
        rows = list(value)
    else:
        raise ValueError(f"matrix must be a sequence of vectors, got {type(value).__name__}")
    out = [_checked(r) for r in rows]
    if out and len({len(r) for r in out}) != 1:
        raise ValueError("matrix rows have different lengths")
    return Rows(np.stack(out)) if out else EMPTY_ROWS


def _checked(value: Any) -> np.ndarray:
    """One row as a finite float32 array (the checks of :func:`coerce_vector`)."""
    return np.asarray(coerce_vector(value), dtype=np.float32)


class Rows(Sequence[tuple[float, ...]]):
    """An immutable matrix of float32 rows: the value of a :data:`Matrix` field.

    It holds one read-only C-contiguous float32 array (``rows.array``; no copy
    is made to read it) and reads like the tuple of float tuples it replaces:
    ``len``, indexing and iteration give float tuples, and it equals a tuple of
    tuples with the same values.

    Example:
        >>> rows = Rows([[1.0, 0.0], [0.0, 1.0]])
        >>> len(rows), rows[1], rows == ((1.0, 0.0), (0.0, 1.0))
        (2, (0.0, 1.0), True)
    """

    __slots__ = ("_a",)

    def __init__(self, rows: Any = ()) -> None:
        a = np.array(rows, dtype=np.float32, order="C")  # a copy: nobody else can write it
        if a.size == 0:
            a = np.zeros((0, 0), np.float32)
        if a.ndim != 2:
            raise ValueError(f"matrix must be two-dimensional, got shape {a.shape}")
        a.setflags(write=False)
        self._a = a

    @property
    def array(self) -> np.ndarray:
        """The rows as a read-only ``(n, dim)`` float32 array (``(0, 0)`` when empty)."""
        return self._a

    def tuples(self) -> tuple[tuple[float, ...], ...]:
        """The rows as tuples of Python floats."""
        return tuple(tuple(r) for r in self._a.tolist())

    def __len__(self) -> int:
        return int(self._a.shape[0])

    @overload
    def __getitem__(self, i: int) -> tuple[float, ...]: ...

    @overload
    def __getitem__(self, i: slice) -> Rows: ...

    def __getitem__(self, i: int | slice) -> tuple[float, ...] | Rows:
        if isinstance(i, slice):
            return Rows(self._a[i])
        return tuple(self._a[i].tolist())

    def __iter__(self) -> Iterator[tuple[float, ...]]:
        return iter(self.tuples())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        a = self._a if dtype is None else self._a.astype(dtype, copy=False)
        return a.copy() if copy else a

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows):
            return self._a.shape == other._a.shape and bool(np.array_equal(self._a, other._a))
        if isinstance(other, tuple):
            return self.tuples() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.tuples())  # equal to an equal tuple's hash

    def __reduce__(self) -> tuple[Any, ...]:
        return (Rows, (self._a,))

    def __repr__(self) -> str:
        return f"Rows({self.tuples()!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            coerce_matrix,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize_matrix, info_arg=True
            ),
            json_schema_input_schema=core_schema.list_schema(
                core_schema.list_schema(core_schema.float_schema())
            ),
        )


EMPTY_ROWS = Rows()
"""The empty matrix (the default of a matrix field)."""


def _serialize_vector(value: tuple[float, ...], info: SerializationInfo) -> Any:
    if info.mode == "json":
        return list(value)
    return np.asarray(value, dtype="<f4").tobytes()


def _serialize_matrix(value: Rows, info: SerializationInfo) -> Any:
    a = coerce_matrix(value).array
    if info.mode == "json":
        return a.tolist()
    return [row.tobytes() for row in a.astype("<f4", copy=False)]


Vector = Annotated[
    tuple[float, ...],
    BeforeValidator(coerce_vector),
    PlainSerializer(_serialize_vector),
]
"""A finite float32 vector; bytes on the wire, a list in JSON."""

Matrix = Rows
"""Rows of equal-length finite float32 vectors (see :class:`Rows`)."""


def to_array(value: tuple[float, ...] | Rows, dim: int | None = None) -> np.ndarray:
    """A float32 numpy array of a vector or matrix field (2-D ``(0, dim)`` for an empty matrix).

    A vector is copied; a matrix's array is its own (read-only, not copied).
    """
    arr = value.array if isinstance(value, Rows) else np.asarray(value, dtype=np.float32)
    if arr.size == 0 and dim is not None:
        return np.zeros((0, dim), dtype=np.float32)
    return arr
