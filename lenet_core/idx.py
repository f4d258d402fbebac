"""Read and write IDX files, the simple binary format MNIST is published in.

An IDX file is a header followed by raw array data, all big-endian:

====================  =====================================================
bytes                 meaning
====================  =====================================================
0-1                   always zero
2                     element type code (``0x08`` = uint8, see ``DTYPES``)
3                     number of dimensions ``ndim``
4 .. 4 + 4*ndim       each dimension as an unsigned 32-bit integer
then                  ``prod(dims)`` elements in C (row-major) order
====================  =====================================================

The first four bytes read as one big-endian integer are the *magic number*.
MNIST uses two of them: ``0x00000803`` for images (uint8, 3 dimensions:
count, rows, columns) and ``0x00000801`` for labels (uint8, 1 dimension).

Files may be gzip-compressed (the published ``.gz`` files); ``read_idx``
recognizes that from the file's first bytes. Every structural problem -- bad
gzip data, a wrong magic number, a file that is shorter or longer than its
header declares -- raises ``IDXFormatError`` with the file name and what is
wrong, never a bare ``struct.error`` or a numpy reshape error.

The header is read first and the size it declares decides everything after it:
a plain file must have exactly that many bytes (checked before reading them), a
gzip file is decompressed in chunks of at most ``CHUNK`` bytes into an array of
the declared size and refused as soon as its stream runs longer, and a header
that declares more than gzip could possibly have packed into the file is refused
before anything is decompressed. So a small, crafted file never costs more
memory than the array its header honestly describes.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "IDXFormatError",
    "DTYPES",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "parse_idx",
    "read_idx",
    "read_idx_header",
    "write_idx",
]

#: IDX element type code -> numpy dtype (as stored: big-endian).
DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Magic number of an MNIST images file: uint8, 3 dimensions (N, rows, cols).
IMAGES_MAGIC = 0x00000803
#: Magic number of an MNIST labels file: uint8, 1 dimension (N,).
LABELS_MAGIC = 0x00000801

_GZIP_SIGNATURE = b"\x1f\x8b"
#: Bytes decompressed per read from a gzip file.
CHUNK = 1 << 20
#: Deflate turns at most 258 bytes into one 2-bit code, so no gzip file inflates to more than
#: about 1032 times its size; a header declaring more than this bound times the file size is corrupt.
MAX_GZIP_RATIO = 1100


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file, or not the kind of IDX file expected."""


def _describe_magic(magic: int) -> str:
    """Human-readable meaning of a magic number, e.g. ``'uint8, 1-D (looks like a labels file)'``."""
    if magic == IMAGES_MAGIC:
        return "uint8, 3-D: an images file"
    if magic == LABELS_MAGIC:
        return "uint8, 1-D: a labels file"
    dtype = DTYPES.get((magic >> 8) & 0xFF)
    kind = dtype.newbyteorder("=").name if dtype is not None else "unknown type"
    return f"{kind}, {magic & 0xFF}-D"


def _count(dims) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def _parse_header(data, source: str, expected_magic: int | None):
    """``(dims, dtype, header_size)`` from the first bytes of an IDX file (at least the whole
    header, if the file has one); IDXFormatError for anything malformed."""
    if len(data) < 4:
        raise IDXFormatError(f"{source}: too short to be an IDX file ({len(data)} bytes, need at least 4)")
    zero, type_code, ndim = struct.unpack(">HBB", bytes(data[:4]))
    magic = (type_code << 8) | ndim
    if zero != 0:
        raise IDXFormatError(
            f"{source}: not an IDX file (first bytes are {bytes(data[:4]).hex()}, "
            "an IDX file starts with two zero bytes)"
        )
    if type_code not in DTYPES:
        raise IDXFormatError(f"{source}: unknown IDX element type code 0x{type_code:02x}")
    if ndim == 0:
        raise IDXFormatError(f"{source}: header declares 0 dimensions")
    if expected_magic is not None and magic != expected_magic:
        raise IDXFormatError(
            f"{source}: wrong kind of IDX file: expected magic 0x{expected_magic:08x} "
            f"({_describe_magic(expected_magic)}), found 0x{magic:08x} ({_describe_magic(magic)})"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(
            f"{source}: truncated header: {ndim} dimensions need {header_size} header bytes, "
            f"file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", bytes(data[4:header_size]))
    dtype = DTYPES[type_code]
    extent = dtype.itemsize  # bytes of the shape with its zero-length axes counted as 1
    for d in dims:
        extent *= max(d, 1)
    if extent > np.iinfo(np.intp).max:
        # An empty array (some axis 0) whose other axes multiply past what NumPy can index.
        raise IDXFormatError(
            f"{source}: header declares shape {dims}, which no array can have "
            f"(the non-zero axes alone exceed {np.iinfo(np.intp).max} bytes); the header is corrupt"
        )
    return dims, dtype, header_size


def _check_length(length: int, expected: int, dims, source: str) -> None:
    if length < expected:
        raise IDXFormatError(
            f"{source}: truncated: header declares shape {dims} ({expected} bytes in total), "
            f"file has only {length} bytes"
        )
    if length > expected:
        raise IDXFormatError(
            f"{source}: {length - expected} unexpected extra bytes after the data "
            f"(header declares shape {dims}, {expected} bytes in total)"
        )


def parse_idx(data: bytes, source: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Decode the bytes of an uncompressed IDX file into an array.

    Parameters
    ----------
    data : bytes-like
        The whole (already decompressed) file content.
    source : str
        Name used in error messages, normally the file path.
    expected_magic : int, optional
        If given (e.g. ``IMAGES_MAGIC``), the header must carry exactly this
        magic number; this catches a labels file passed where images belong.

    Returns
    -------
    numpy.ndarray
        A new, writable array in native byte order with the dimensions given
        by the header, e.g. uint8 ``(N, 28, 28)`` for MNIST images.

    Raises
    ------
    IDXFormatError
        If the header is malformed, the magic number is unexpected, or the
        data is shorter or longer than the header declares.
    """
    data = memoryview(data).cast("B")
    dims, dtype, header_size = _parse_header(data, source, expected_magic)
    expected = header_size + _count(dims) * dtype.itemsize
    _check_length(len(data), expected, dims, source)
    count = _count(dims)
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=header_size)
    return flat.reshape(dims).astype(dtype.newbyteorder("="))  # copy: writable, native order


class _Source:
    """An IDX file opened for reading: plain, or gzip decompressed on the fly."""

    def __init__(self, path: Path):
        self.path = path
        self.raw = open(path, "rb")
        self.size = os.fstat(self.raw.fileno()).st_size
        self.compressed = self.raw.read(2) == _GZIP_SIGNATURE
        self.raw.seek(0)
        if not self.compressed and path.suffix == ".gz":
            start = self.raw.read(4)
            self.raw.close()
            raise IDXFormatError(f"{path}: named .gz but is not gzip-compressed (starts with {start.hex()})")
        self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb") if self.compressed else self.raw

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the data)."""
        parts, left = [], n
        while left > 0:
            part = self._guarded(self.stream.read, min(left, CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def readinto(self, view) -> int:
        """Fill ``view`` in chunks; the number of bytes that were there."""
        done = 0
        while done < len(view):
            got = self._guarded(self.stream.readinto, view[done:done + CHUNK])
            if not got:
                break
            done += got
        return done

    def _guarded(self, fn, arg):
        try:
            return fn(arg)
        except (OSError, EOFError, zlib.error) as exc:
            if not self.compressed:
                raise
            raise IDXFormatError(f"{self.path}: corrupt or truncated gzip data ({exc})") from exc

    def close(self):
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


def read_idx_header(path: str | os.PathLike, expected_magic: int | None = None) -> tuple[int, ...]:
    """The shape an IDX file's header declares, e.g. ``(60000, 28, 28)``, reading only the header.

    Raises ``FileNotFoundError`` or :class:`IDXFormatError` like :func:`read_idx`; the data
    itself is not checked.
    """
    path = Path(path)
    source = _Source(path)
    try:
        return _read_header(source, path, expected_magic)[0]
    finally:
        source.close()


def _read_header(source, path: Path, expected_magic):
    """``(dims, dtype, header size)`` from the start of an open ``_Source``."""
    head = source.read(4)
    if len(head) == 4 and head[:2] == b"\0\0":
        head += source.read(4 * head[3])
    return _parse_header(head, str(path), expected_magic)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not, into a numpy array.

    Parameters
    ----------
    path : str or path-like
        The file. Compression is detected from its first two bytes; a file
        whose name ends in ``.gz`` must actually be gzip data.
    expected_magic : int, optional
        ``IMAGES_MAGIC`` or ``LABELS_MAGIC`` (or any other magic number) to
        insist on a particular kind of file.

    Returns
    -------
    numpy.ndarray
        Writable array in native byte order, shape and dtype from the header
        (MNIST: uint8 ``(N, 28, 28)`` images or uint8 ``(N,)`` labels).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    IDXFormatError
        If the gzip data is corrupt or the IDX content is malformed,
        truncated, too long, or of the wrong kind; the message names the file.
        Nothing beyond the size the header declares is ever decompressed.
    """
    path = Path(path)
    source = _Source(path)
    try:
        dims, dtype, header_size = _read_header(source, path, expected_magic)
        nbytes = _count(dims) * dtype.itemsize
        if not source.compressed:
            _check_length(source.size, header_size + nbytes, dims, str(path))   # before reading any data
        elif nbytes > MAX_GZIP_RATIO * source.size:
            raise IDXFormatError(
                f"{path}: header declares shape {dims} ({header_size + nbytes} bytes), more than "
                f"{source.size} bytes of gzip data can hold; the file is truncated or its header is corrupt"
            )
        array = np.empty(_count(dims), dtype=dtype)
        got = source.readinto(memoryview(array).cast("B"))
        length = header_size + got
        if got == nbytes and source.read(1):
            length += 1 + len(source.read(1 << 16))   # how much is left over, up to 64 KB
            raise IDXFormatError(
                f"{path}: unexpected extra bytes after the data (at least {length - header_size - nbytes}; "
                f"header declares shape {dims}, {header_size + nbytes} bytes in total)"
            )
        _check_length(length, header_size + nbytes, dims, str(path))
    finally:
        source.close()
    return array.reshape(dims).astype(dtype.newbyteorder("="), copy=False)  # native order, no copy for bytes


def _type_code(dtype: np.dtype) -> int:
    """IDX type code for a numpy dtype, ignoring byte order."""
    for code, idx_dtype in DTYPES.items():
        if idx_dtype.newbyteorder("=") == dtype.newbyteorder("="):
            return code
    supported = ", ".join(d.newbyteorder("=").name for d in DTYPES.values())
    raise ValueError(f"IDX cannot store dtype {dtype}; supported: {supported}")


def write_idx(path: str | os.PathLike, array) -> None:
    """Write an array as an IDX file; gzip-compress it if ``path`` ends in ``.gz``.

    Parameters
    ----------
    path : str or path-like
        Destination. Parent directories must exist.
    array : array_like
        1 to 255 dimensions, each below 2**32, of dtype uint8, int8, int16,
        int32, float32 or float64. MNIST images are uint8 ``(N, 28, 28)``,
        labels uint8 ``(N,)``.

    Raises
    ------
    ValueError
        If the dtype or number of dimensions cannot be stored in IDX.

    Notes
    -----
    Gzip output stores no file name and a zero timestamp, so writing the same array twice
    gives byte-identical files.
    """
    array = np.asarray(array)
    code = _type_code(array.dtype)
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got an array with {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(payload)
    else:
        path.write_bytes(payload)
