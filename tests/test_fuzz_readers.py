"""Fuzzing the checkpoint and IDX readers: random truncations, bit flips, lying sizes and hostile
metadata. Every input either loads as a valid file or raises the reader's own error
(CheckpointError, IDXFormatError), never anything else, and never costs more memory than a
small bound, however large the sizes the file claims. (Issue 16: a 713 KB checkpoint used to
expand to 4.2 GB before anything was checked.)

The examples are drawn by Hypothesis; CI runs them derandomized (HYPOTHESIS_PROFILE=ci).
"""
from __future__ import annotations

import gzip
import io
import json
import struct
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lenet_core as lc
from lenet_core.checkpoint import META_KEY, CheckpointError, load_checkpoint, save_checkpoint
from lenet_core.idx import MAX_GZIP_RATIO, IDXFormatError, read_idx

MEMORY_BOUND = 32 << 20          # bytes any single read may allocate (the good checkpoint is ~0.75 MB)
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Blob(bytes):
    """File contents that print as their size (Hypothesis prints a failing example's arguments)."""

    def __repr__(self):
        return f"<{len(self):,} bytes>"


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    """A real checkpoint (modern LeNet-5 with dropout, Adam buffers, a history) as bytes."""
    model = lc.lenet5("modern", seed=0, dropout=0.25)
    opt = lc.Adam(model, 1e-3)
    x = np.random.default_rng(0).random((16, 1, 32, 32), dtype=np.float32)
    history = lc.fit(model, opt, x, np.arange(16) % 10, 1, batch_size=8, progress=False, processes=1)
    path = tmp_path_factory.mktemp("fuzz") / "good.npz"
    save_checkpoint(path, model, opt, epoch=1, history=history, extra={"note": "fuzz"})
    return Blob(path.read_bytes())


def _entries(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def _load(blob: bytes):
    """Load ``blob`` as a checkpoint under tracemalloc; ``(checkpoint or None, peak bytes)``.
    Any exception other than CheckpointError fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.npz"
        path.write_bytes(blob)
        tracemalloc.start()
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError:
            ckpt = None
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    if ckpt is not None:   # accepted: then it must really be a sound checkpoint
        params = ckpt.model.named_params()
        assert params and all(np.isfinite(p).all() for p in params.values())
        assert ckpt.epoch >= 0
    return ckpt, peak


# -- the zip layer: cut anywhere, flip any byte, lie about any size ---------------------------------


@FUZZ
@given(st.data())
def test_truncated_anywhere(good_checkpoint, data):
    cut = data.draw(st.integers(0, len(good_checkpoint) - 1), label="cut")
    ckpt, peak = _load(good_checkpoint[:cut])
    assert ckpt is None and peak < MEMORY_BOUND


@FUZZ
@given(st.data())
def test_bit_flips_anywhere(good_checkpoint, data):
    blob = bytearray(good_checkpoint)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        pos = data.draw(st.integers(0, len(blob) - 1), label="position")
        blob[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    _, peak = _load(bytes(blob))
    assert peak < MEMORY_BOUND


@FUZZ
@given(st.data())
def test_zip_directory_claims_huge_sizes(good_checkpoint, data):
    """Patch an entry's uncompressed size in the zip's central directory (and local header) to
    anything up to 4 GB: refused from the directory, nothing inflated."""
    blob = bytearray(good_checkpoint)
    with zipfile.ZipFile(io.BytesIO(good_checkpoint)) as z:
        infos = z.infolist()
    info = data.draw(st.sampled_from(infos), label="entry")
    size = data.draw(st.integers(0, 2**32 - 2), label="claimed size")
    central = blob.find(b"PK\x01\x02")
    while central != -1:   # find this entry's central directory record
        name_len = struct.unpack_from("<H", blob, central + 28)[0]
        if blob[central + 46:central + 46 + name_len].decode() == info.filename:
            struct.pack_into("<I", blob, central + 24, size)
            break
        central = blob.find(b"PK\x01\x02", central + 4)
    if data.draw(st.booleans(), label="local header too"):
        struct.pack_into("<I", blob, info.header_offset + 22, size)
    _, peak = _load(bytes(blob))
    assert peak < MEMORY_BOUND


# -- the contents, re-zipped with valid checksums: .npy headers and metadata that lie ----------------


def _npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _npy_data(raw: bytes) -> bytes:
    """The data part of an .npy entry (after its header)."""
    f = io.BytesIO(raw)
    np.lib.format.read_magic(f)
    np.lib.format.read_array_header_1_0(f)
    return raw[f.tell():]


@FUZZ
@given(st.data())
def test_npy_headers_that_lie(good_checkpoint, data):
    """An entry's .npy header claims another shape (up to 2**40 elements), another dtype, or is
    damaged; its data may be kept, cut or padded: never read past what the metadata promises."""
    entries = _entries(good_checkpoint)
    name = data.draw(st.sampled_from(sorted(entries)), label="entry")
    payload = _npy_data(entries[name])
    kind = data.draw(st.sampled_from(["shape", "dtype", "flip"]), label="kind")
    if kind == "shape":
        shape = data.draw(st.lists(st.integers(0, 2**20), min_size=1, max_size=3), label="shape")
        header = _npy_header(shape)
    elif kind == "dtype":
        header = _npy_header(np.load(io.BytesIO(entries[name])).shape,
                             data.draw(st.sampled_from(["<f8", "<i4", "|u1", ">f4", "|O", "<c8", "|b1"])))
    else:
        header = bytearray(entries[name][:len(entries[name]) - len(payload)])
        header[data.draw(st.integers(0, len(header) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        header = bytes(header)
    tail = data.draw(st.sampled_from(["same", "cut", "padded"]), label="data")
    if tail == "cut":
        payload = payload[:len(payload) // 2]
    elif tail == "padded":
        payload = payload + bytes(data.draw(st.integers(1, 4096)))
    original = np.load(io.BytesIO(entries[name]))
    entries[name] = header + payload
    ckpt, peak = _load(_zip(entries))
    assert peak < MEMORY_BOUND
    if ckpt is not None:   # accepted only if the entry still says what the metadata promises
        try:
            now = np.load(io.BytesIO(entries[name]), allow_pickle=False)
        except Exception:
            pytest.fail(f"accepted an entry NumPy itself cannot read: {header!r}")
        assert now.shape == original.shape and now.dtype.newbyteorder("=") == original.dtype


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4),
                    max_leaves=12)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@FUZZ
@given(st.data())
def test_metadata_that_lies(good_checkpoint, data):
    """Any field of the metadata replaced by any JSON value, or deleted."""
    entries = _entries(good_checkpoint)
    meta = json.loads(np.load(io.BytesIO(entries[META_KEY + ".npy"])).tobytes())
    paths = [p for p in _paths(meta) if p]
    path = data.draw(st.sampled_from(paths), label="field")
    node = meta
    for key in path[:-1]:
        node = node[key]
    if data.draw(st.booleans(), label="delete"):
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(JSON, label="value")
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    entries[META_KEY + ".npy"] = buf.getvalue()
    _, peak = _load(_zip(entries))
    assert peak < MEMORY_BOUND


@FUZZ
@given(st.data())
def test_architectures_that_claim_huge_layers(good_checkpoint, data):
    """The stored architecture claims layers with up to 2**31 channels or features: refused before
    anything is built or read."""
    entries = _entries(good_checkpoint)
    meta = json.loads(np.load(io.BytesIO(entries[META_KEY + ".npy"])).tobytes())
    sized = [(i, k) for i, layer in enumerate(meta["model"]["config"]) for k, v in layer.items()
             if isinstance(v, int) and k != "stride"]
    i, key = data.draw(st.sampled_from(sized), label="size")
    meta["model"]["config"][i][key] = data.draw(st.integers(-3, 2**31), label="value")
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    entries[META_KEY + ".npy"] = buf.getvalue()
    _, peak = _load(_zip(entries))
    assert peak < MEMORY_BOUND


# -- IDX files, gzipped: flips, cuts and headers that claim more than the file holds -------------------


@pytest.fixture(scope="module")
def images_gz() -> bytes:
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    header = struct.pack(">HBB3I", 0, 0x08, 3, *images.shape)
    return Blob(gzip.compress(header + images.tobytes(), mtime=0))


def _read_idx(blob: bytes, name="f.gz"):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(blob)
        tracemalloc.start()
        try:
            result = read_idx(path)
        except IDXFormatError:
            result = None
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return result, peak


@FUZZ
@given(st.data())
def test_idx_gzip_flips_and_cuts(images_gz, data):
    blob = bytearray(images_gz)
    if data.draw(st.booleans(), label="cut"):
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    for _ in range(data.draw(st.integers(0, 6), label="flips")):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    result, peak = _read_idx(bytes(blob))
    assert peak < MEMORY_BOUND
    if result is not None:
        assert result.ndim >= 1 and result.nbytes <= 50 * 28 * 28 * 8


@FUZZ
@given(dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4) | st.lists(st.integers(0, 64), min_size=1,
                                                                                       max_size=4),
       zeros=st.integers(0, 12 << 20), code=st.sampled_from([0x08, 0x0B, 0x0D, 0x0E]))
def test_idx_headers_that_claim_anything(dims, zeros, code):
    """A gzipped header declaring any shape, followed by up to 12 MB of zeros (a few KB on disk): no
    more than the declared array (if the file could hold it) plus a few chunks is ever in memory,
    never the whole stream."""
    header = struct.pack(f">HBB{len(dims)}I", 0, code, len(dims), *dims)
    blob = gzip.compress(header + bytes(zeros), mtime=0)
    result, peak = _read_idx(blob)
    declared = int(np.prod(dims, dtype=object)) * {0x08: 1, 0x0B: 2, 0x0D: 4, 0x0E: 8}[code]
    allocated = declared if declared <= MAX_GZIP_RATIO * len(blob) else 0   # the array read into
    assert peak < (7 << 19) + allocated
    if declared != zeros:
        assert result is None
    elif result is not None:
        assert result.shape == tuple(dims)
