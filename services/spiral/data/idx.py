"""Reader for the IDX format of the MNIST distribution files (LeCun et al.).

An IDX file is a 4-byte magic number — two zero bytes, a type code, the number of dimensions —
followed by one big-endian uint32 per dimension and the data, big-endian, row-major. MNIST ships
them gzip-compressed (``*-idx3-ubyte.gz``). :func:`read_idx` accepts either form and checks
everything a damaged download gets wrong: the gzip stream, the magic, the type, the rank and that
the payload holds exactly as many bytes as the header promises.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from spiral.data.base import DatasetError

__all__ = ["IDX_DTYPES", "encode_idx", "read_idx"]

#: IDX type code → numpy dtype (big-endian, as the format stores them).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read IDX file {path}: {err}") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw  # an already-decompressed IDX file: accepted as is
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DatasetError(
            f"{path} is a truncated gzip file (the stream ends before its end marker, {len(raw)} bytes on disk); "
            "download it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        raise DatasetError(f"{path} is not a valid gzip file ({err}); download it again") from None


def read_idx(path: Path | str, expected_ndim: int | None = None, expected_dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """Read a (gzipped or plain) IDX file into a native-endian numpy array.

    Args:
        path: the file, e.g. ``t10k-images-idx3-ubyte.gz``.
        expected_ndim: if set, the rank the header must declare (3 for images, 1 for labels).
        expected_dtype: if set, the element type the header must declare (``uint8`` for MNIST).

    Raises:
        DatasetError: unreadable or truncated gzip, a bad magic number, an unknown type code, a
            rank or type other than expected, or a payload whose size differs from the header's.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path} is too short to be an IDX file ({len(data)} bytes after decompression, need a 4-byte magic number)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{path} has a bad IDX magic number 0x{data[:4].hex()}: expected 0x0000TTDD with type TT in "
            f"{{{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}}} and DD ≥ 1 dimensions "
            "(MNIST images 0x00000803, labels 0x00000801)"
        )
    dtype = IDX_DTYPES[type_code]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetError(f"{path} declares {ndim} dimensions, expected {expected_ndim} (is it the images/labels file swapped?)")
    if expected_dtype is not None and dtype.newbyteorder("=") != np.dtype(expected_dtype).newbyteorder("="):
        raise DatasetError(f"{path} declares element type {dtype.newbyteorder('=')}, expected {np.dtype(expected_dtype)}")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise DatasetError(f"{path} is truncated inside its header: {ndim} dimensions need {header_end} bytes, got {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header_end])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_end
    if payload != expected:
        kind = "truncated" if payload < expected else "longer than its header says"
        raise DatasetError(
            f"{path} is {kind}: the header declares dimensions {list(dims)} of {dtype.itemsize}-byte "
            f"elements ({expected} bytes) but the payload has {payload} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def encode_idx(array: np.ndarray) -> bytes:
    """Serialise an array in IDX (uncompressed): the inverse of :func:`read_idx`, used to build test files.

    Raises:
        DatasetError: a dtype the format has no code for.
    """
    array = np.asarray(array)
    for code, dtype in IDX_DTYPES.items():
        if dtype.newbyteorder("=") == array.dtype.newbyteorder("="):
            header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            return header + array.astype(dtype, copy=False).tobytes()
    raise DatasetError(f"IDX cannot store dtype {array.dtype}; valid: {[str(d.newbyteorder('=')) for d in IDX_DTYPES.values()]}")
