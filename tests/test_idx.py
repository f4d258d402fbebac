"""IDX reader/writer: round trips, and every malformed file raises IDXFormatError."""
from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lenet_core.idx import IMAGES_MAGIC, LABELS_MAGIC, IDXFormatError, parse_idx, read_idx, write_idx

SUPPORTED_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def idx_bytes(array: np.ndarray) -> bytes:
    """Reference encoder written independently of write_idx: header by hand, big-endian data."""
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    code = codes[array.dtype.kind + str(array.dtype.itemsize)]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


# --- round trips ------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_like_round_trip(tmp_path, images, suffix):
    labels = np.arange(5, dtype=np.uint8)
    write_idx(tmp_path / f"img{suffix}", images)
    write_idx(tmp_path / f"lab{suffix}", labels)
    got_images = read_idx(tmp_path / f"img{suffix}", expected_magic=IMAGES_MAGIC)
    got_labels = read_idx(tmp_path / f"lab{suffix}", expected_magic=LABELS_MAGIC)
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable


def test_writer_matches_format_spec(tmp_path, images):
    write_idx(tmp_path / "img", images)
    raw = (tmp_path / "img").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", raw[4:16]) == (5, 28, 28)
    assert raw == idx_bytes(images)


def test_gzip_output_is_deterministic_and_real_gzip(tmp_path, images):
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b.gz", images)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == idx_bytes(images)


def test_compression_detected_from_content_not_name(tmp_path, images):
    (tmp_path / "compressed-without-suffix").write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed-without-suffix"), images)


@settings(max_examples=60, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(SUPPORTED_DTYPES),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    gz=st.booleans(),
)
def test_round_trip_any_supported_array(array, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("a.idx.gz" if gz else "a.idx")
        write_idx(path, array)
        got = read_idx(path)
    assert got.dtype == array.dtype.newbyteorder("=")
    assert got.shape == array.shape
    np.testing.assert_array_equal(got, array)  # NaNs compare equal here


def test_big_endian_multibyte_values():
    data = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">ii", 1, -2)
    got = parse_idx(data)
    assert got.dtype == np.dtype("=i4")
    assert got.tolist() == [1, -2]


def test_writer_rejects_unsupported(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))


# --- malformed files: each names the file and the problem -------------------------------

def check_error(path, match, expected_magic=None):
    with pytest.raises(IDXFormatError, match=match) as info:
        read_idx(path, expected_magic=expected_magic)
    assert str(path) in str(info.value)


def test_labels_file_passed_as_images(tmp_path):
    write_idx(tmp_path / "labels", np.zeros(4, dtype=np.uint8))
    check_error(tmp_path / "labels", r"expected magic 0x00000803.*found 0x00000801.*labels", IMAGES_MAGIC)


def test_images_file_passed_as_labels(tmp_path, images):
    write_idx(tmp_path / "images", images)
    check_error(tmp_path / "images", r"expected magic 0x00000801.*found 0x00000803.*images", LABELS_MAGIC)


def test_wrong_element_type_for_mnist(tmp_path):
    write_idx(tmp_path / "f", np.zeros((2, 28, 28), dtype=np.float32))
    check_error(tmp_path / "f", r"found 0x00000d03 \(float32, 3-D\)", IMAGES_MAGIC)


def test_not_idx_at_all(tmp_path):
    (tmp_path / "text").write_bytes(b"hello, world")
    check_error(tmp_path / "text", "not an IDX file")


def test_unknown_type_code(tmp_path):
    (tmp_path / "f").write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 0]))
    check_error(tmp_path / "f", "unknown IDX element type code 0x07")


def test_zero_dimensions(tmp_path):
    (tmp_path / "f").write_bytes(bytes([0, 0, 0x08, 0]))
    check_error(tmp_path / "f", "0 dimensions")


def test_too_short_for_magic(tmp_path):
    (tmp_path / "f").write_bytes(b"\x00\x00")
    check_error(tmp_path / "f", "too short")


def test_truncated_header(tmp_path, images):
    (tmp_path / "f").write_bytes(idx_bytes(images)[:10])
    check_error(tmp_path / "f", "truncated header")


def test_truncated_data(tmp_path, images):
    (tmp_path / "f").write_bytes(idx_bytes(images)[:-1])
    check_error(tmp_path / "f", r"truncated: header declares shape \(5, 28, 28\)")


def test_truncated_data_inside_valid_gzip(tmp_path, images):
    (tmp_path / "f.gz").write_bytes(gzip.compress(idx_bytes(images)[:100]))
    check_error(tmp_path / "f.gz", "truncated")


def test_extra_bytes(tmp_path, images):
    (tmp_path / "f").write_bytes(idx_bytes(images) + b"\x00")
    check_error(tmp_path / "f", "1 unexpected extra bytes")


def test_truncated_gzip_stream(tmp_path, images):
    blob = gzip.compress(idx_bytes(images))
    (tmp_path / "f.gz").write_bytes(blob[: len(blob) // 2])
    check_error(tmp_path / "f.gz", "corrupt or truncated gzip")


def test_corrupted_gzip_stream(tmp_path, images):
    blob = bytearray(gzip.compress(idx_bytes(images)))
    blob[len(blob) // 2] ^= 0xFF
    blob[-8] ^= 0xFF  # CRC as well, in case the flipped byte still inflates
    (tmp_path / "f.gz").write_bytes(bytes(blob))
    check_error(tmp_path / "f.gz", "corrupt or truncated gzip")


def test_gz_name_but_plain_content(tmp_path, images):
    (tmp_path / "f.gz").write_bytes(idx_bytes(images))
    check_error(tmp_path / "f.gz", "not gzip-compressed")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_error_is_a_value_error():
    assert issubclass(IDXFormatError, ValueError)


# --- fuzzing: arbitrary input raises IDXFormatError and nothing else ----------------------

def parse_or_format_error(data: bytes, **kwargs):
    """Return the parsed array, or None if IDXFormatError; any other exception fails the test."""
    try:
        return parse_idx(data, **kwargs)
    except IDXFormatError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([None, IMAGES_MAGIC, LABELS_MAGIC]))
def test_fuzz_random_bytes(data, expected_magic):
    result = parse_or_format_error(data, expected_magic=expected_magic)
    if result is not None:  # accepted only if it is exactly a consistent IDX file
        assert idx_bytes(result) == data


@settings(max_examples=200, deadline=None)
@given(
    header=st.tuples(
        st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
        st.integers(0, 6),
    ),
    dims=st.lists(st.integers(0, 2**32 - 1), max_size=6),
    tail=st.binary(max_size=64),
)
# Found by this test: an empty array whose other axes multiply past NumPy's limit.
@example(header=(0x08, 6), dims=[0, 0, 0, 51496, 4007001, 44698895], tail=b"")
def test_fuzz_plausible_headers_with_huge_dims(header, dims, tail):
    """Headers that look right but declare any sizes (up to 2**32 per axis) must not hang or allocate."""
    code, ndim = header
    data = bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", d) for d in dims) + tail
    result = parse_or_format_error(data)
    if result is not None:
        assert idx_bytes(result) == data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_truncations_and_byte_flips(data):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    valid = idx_bytes(array)
    cut = data.draw(st.integers(0, len(valid) - 1), label="cut")
    assert parse_or_format_error(valid[:cut]) is None  # every strict prefix is rejected

    flipped = bytearray(valid)
    pos = data.draw(st.integers(0, 4 + 4 * 3 - 1), label="header byte")
    flipped[pos] ^= data.draw(st.integers(1, 255), label="xor")
    result = parse_or_format_error(bytes(flipped))
    # Almost every header change breaks consistency; uint8 -> int8 (same size) legitimately parses.
    if result is not None:
        assert result.dtype == np.int8 and idx_bytes(result) == bytes(flipped)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.booleans())
def test_fuzz_files_through_read_idx(payload, as_gzip_member):
    """The file path (gzip detection included) also raises only IDXFormatError."""
    content = b"\x1f\x8b" + payload if as_gzip_member else payload
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("f", "f.gz"):
            path = Path(tmp) / name
            path.write_bytes(content)
            try:
                read_idx(path)
            except IDXFormatError:
                pass


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_fuzz_truncated_gzip_files(data):
    array = np.random.default_rng(1).integers(0, 256, size=(3, 7, 5), dtype=np.uint8)
    blob = gzip.compress(idx_bytes(array))
    cut = data.draw(st.integers(2, len(blob) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.gz"
        path.write_bytes(blob[:cut])
        with pytest.raises(IDXFormatError):
            read_idx(path)


# --- bounded memory: the header decides how much is ever decompressed ----------------------

def _peak_bytes(fn):
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _gzip_bomb(path, header: bytes, zeros: int):
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(header)
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(chunk)
    return path


def test_gzip_stream_longer_than_its_header_is_refused_in_bounded_memory(tmp_path):
    """A 65 KB file whose header declares 5 images but whose stream inflates to 64 MB: refused after
    reading at most one chunk past the declared size, never inflated whole."""
    header = struct.pack(">HBB3I", 0, 0x08, 3, 5, 28, 28)
    path = _gzip_bomb(tmp_path / "bomb.gz", header, 64 << 20)
    assert path.stat().st_size < 1 << 17
    errors = []

    def read():
        with pytest.raises(IDXFormatError, match="unexpected extra bytes") as info:
            read_idx(path)
        errors.append(info)

    assert _peak_bytes(read) < 8 << 20 and errors


def test_header_declaring_more_than_the_file_can_hold_is_refused_unread(tmp_path):
    """60,000 images declared in a few bytes of gzip: impossible, refused before allocating 47 MB."""
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(struct.pack(">HBB3I", 0, 0x08, 3, 60000, 28, 28) + bytes(100)))
    assert _peak_bytes(lambda: pytest.raises(IDXFormatError, read_idx, path)) < 1 << 20
    check_error(path, "more than .* bytes of gzip data can hold")


def test_plain_file_of_the_wrong_size_is_refused_before_reading(tmp_path, images):
    path = tmp_path / "f"
    path.write_bytes(idx_bytes(images) + bytes(10 << 20))
    assert _peak_bytes(lambda: pytest.raises(IDXFormatError, read_idx, path)) < 1 << 20
    check_error(path, "10485760 unexpected extra bytes")


def test_read_idx_header_reads_only_the_header(tmp_path, images):
    from lenet_core.idx import read_idx_header
    write_idx(tmp_path / "i.gz", images)
    assert read_idx_header(tmp_path / "i.gz") == (5, 28, 28)
    (tmp_path / "cut").write_bytes(idx_bytes(images)[:20])   # the data is not checked
    assert read_idx_header(tmp_path / "cut", expected_magic=IMAGES_MAGIC) == (5, 28, 28)
    with pytest.raises(IDXFormatError, match="expected magic"):
        read_idx_header(tmp_path / "cut", expected_magic=LABELS_MAGIC)
