"""The libblosc2 bridge: decoding many blosc2 chunks from one call, through its C API.

The python-blosc2 wheel ships ``libblosc2`` next to its extension module.  We load
that library with :mod:`ctypes` (``RTLD_LOCAL``, so its bundled zstd/lz4 symbols
interpose on nothing) on first use, without importing ``blosc2``.  Python calls
its functions through ctypes (:func:`payload_xxh64`, :func:`decompress`,
:func:`read_pieces_py`: no compile at all); for the jitted kernels we register
the addresses of the few C functions they call under private symbol names with
LLVM and call them from ``@numba.njit(nogil=True)`` code as external functions.
Referring to the functions *by name* keeps the kernel cacheable on disk (a ctypes
pointer would be baked in as a constant and defeat ``cache=True``).

Each thread decodes with its own single-threaded decompression context
(``blosc2_decompress_ctx`` is re-entrant per context), so several threads
decode in parallel with the GIL released.  When the library cannot be found,
:data:`AVAILABLE` is False and callers fall back to ``blosc2.decompress2``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from atlas.engine.jit import Kernel, KernelModule
from atlas.engine.kernels import copy_box_at, xxh64, xxh64_many
from atlas.engine.pieces import Payloads, Pieces

__all__ = [
    "AVAILABLE",
    "ERR_BOUNDS",
    "ERR_CHECKSUM",
    "ERR_SIZE",
    "UNAVAILABLE_REASON",
    "decode_chunks",
    "cbuffer_sizes",
    "decompress",
    "payload_xxh64",
    "rows_xxh64",
    "read_pieces",
    "read_pieces_compiled",
    "read_pieces_py",
    "thread_context",
]

# AVAILABLE and UNAVAILABLE_REASON are set by _ensure_loaded(), on first access
# (see __getattr__): importing this module loads neither libblosc2 nor numba.
_LIB: ctypes.CDLL | None = None
_XXH64: Any = None  # libblosc2's bundled XXH64 (zstd's copy), through ctypes
_load_lock = threading.Lock()
_loaded = False
# The C functions as the kernels call them (numba ExternalFunctions), set by _setup_numba.
_blosc2_decompress_ctx: Any = None
_blosc2_getitem_ctx: Any = None
_xxh64_c: Any = None


def _library_candidates() -> list[Path]:
    # The package directory, found without importing blosc2 (a third of a second).
    spec = importlib.util.find_spec("blosc2")
    if spec is None or not spec.submodule_search_locations:
        return []
    pkg = Path(next(iter(spec.submodule_search_locations)))
    dirs = [pkg / "lib", pkg / "lib64", pkg / ".dylibs", pkg, pkg.parent / "blosc2.libs", Path(sys.prefix) / "lib"]
    patterns = ("libblosc2.so*", "libblosc2*.dylib", "blosc2*.dll", "libblosc2*.so")
    found: list[Path] = []
    for d in dirs:
        if d.is_dir():
            for pattern in patterns:
                found.extend(sorted(d.glob(pattern)))
    return found


class _DParams(ctypes.Structure):
    """``blosc2_dparams``: nthreads, schunk, postfilter, postparams (and typesize in 3.x).

    Passed by value; a struct this size goes in memory on every 64-bit ABI, so the
    zeroed reserve is harmless to a library that reads only its own prefix, and zero
    means "default" for every trailing field.
    """

    _fields_ = [
        ("nthreads", ctypes.c_int16),
        ("schunk", ctypes.c_void_p),
        ("postfilter", ctypes.c_void_p),
        ("postparams", ctypes.c_void_p),
        ("typesize", ctypes.c_int32),
        ("reserved", ctypes.c_uint8 * 64),
    ]


def _load() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("ATLAS_NO_NATIVE"):
        return None, "disabled by ATLAS_NO_NATIVE"
    errors = []
    for path in _library_candidates():
        try:
            lib = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_LOCAL", 0) | getattr(os, "RTLD_NOW", 0))
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        if all(hasattr(lib, s) for s in ("blosc2_init", "blosc2_create_dctx", "blosc2_decompress_ctx")):
            return lib, ""
        errors.append(f"{path}: missing symbols")
    return None, "; ".join(errors) or "libblosc2 not found in the blosc2 package"


def _ensure_loaded() -> None:
    """Load libblosc2 and declare the C functions we call (once per process)."""
    global _LIB, _XXH64, _loaded, AVAILABLE, UNAVAILABLE_REASON
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        lib, reason = _load()
        if lib is not None:
            lib.blosc2_init.argtypes = []
            lib.blosc2_init.restype = None
            lib.blosc2_init()
            lib.blosc2_create_dctx.argtypes = [_DParams]
            lib.blosc2_create_dctx.restype = ctypes.c_void_p
            lib.blosc2_free_ctx.argtypes = [ctypes.c_void_p]
            lib.blosc2_free_ctx.restype = None
            lib.blosc2_decompress_ctx.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_int32,
                ctypes.c_void_p,
                ctypes.c_int32,
            ]
            lib.blosc2_decompress_ctx.restype = ctypes.c_int32
            lib.blosc2_getitem_ctx.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_int32,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_int32,
            ]
            lib.blosc2_getitem_ctx.restype = ctypes.c_int
            lib.blosc2_cbuffer_sizes.argtypes = [ctypes.c_void_p, *[ctypes.POINTER(ctypes.c_int32)] * 3]
            lib.blosc2_cbuffer_sizes.restype = ctypes.c_int
            # zstd, bundled in libblosc2, exports its XXH64 under this name: the same
            # function as kernels.xxh64, without a compile.
            xxh = getattr(lib, "ZSTD_XXH64", None)
            if xxh is not None:
                xxh.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64]
                xxh.restype = ctypes.c_uint64
            _XXH64 = xxh
        _LIB = lib
        AVAILABLE = lib is not None
        UNAVAILABLE_REASON = reason
        _loaded = True


def __getattr__(name: str) -> Any:
    if name in ("AVAILABLE", "UNAVAILABLE_REASON"):
        _ensure_loaded()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def payload_xxh64(data: np.ndarray) -> int:
    """XXH64 (seed 0) of a contiguous uint8 array, as a Python int.

    Through libblosc2's bundled XXH64 when it exports it (no compile), else
    :func:`atlas.engine.kernels.xxh64`.
    """
    _ensure_loaded()
    if _XXH64 is not None:
        return _XXH64(data.ctypes.data, data.nbytes, 0)
    return int(xxh64(data))


def rows_xxh64(block: np.ndarray, nbytes: int) -> list[int]:
    """XXH64 (seed 0) of the first ``nbytes`` of every row of the C-contiguous uint8 matrix ``block``.

    One C call per row through ``map`` (no Python frame per row): the checksums of
    the many tiny chunks a flush of small datasets lays out in one block.
    """
    _ensure_loaded()
    n, stride = block.shape
    if _XXH64 is None:
        out = np.empty(n, np.uint64)
        xxh64_many(block.reshape(-1), np.arange(n, dtype=np.int64) * stride, np.full(n, nbytes, np.int64), out)
        return out.tolist()
    base = block.ctypes.data
    starts = range(base, base + n * stride, stride)
    return list(map(_XXH64, starts, itertools.repeat(nbytes, n), itertools.repeat(0, n)))


def cbuffer_sizes(header: np.ndarray) -> tuple[int, int] | None:
    """``(nbytes, cbytes)`` from the first 32 bytes of a blosc2 chunk (None: damaged header).

    Only with :data:`AVAILABLE`.
    """
    _ensure_loaded()
    nbytes, cbytes, blocksize = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
    rc = _LIB.blosc2_cbuffer_sizes(  # type: ignore[union-attr]
        header.ctypes.data, ctypes.byref(nbytes), ctypes.byref(cbytes), ctypes.byref(blocksize)
    )
    return None if rc < 0 else (nbytes.value, cbytes.value)


def decompress(stored: np.ndarray, out: np.ndarray) -> int:
    """Decode the blosc2 chunk ``stored`` (uint8) into ``out`` (uint8), on this thread.

    Returns the decoded size or a negative libblosc2 error code.  Only with
    :data:`AVAILABLE`; the caller has checked both sizes against the chunk header.
    """
    _ensure_loaded()
    return _LIB.blosc2_decompress_ctx(  # type: ignore[union-attr]
        thread_context(), stored.ctypes.data, stored.nbytes, out.ctypes.data, out.nbytes
    )


def _setup_numba() -> None:
    """Declare the C functions the kernels below call, by name (keeps them cacheable)."""
    import llvmlite.binding as llb
    import numba
    from numba import types

    _ensure_loaded()
    g = globals()
    g["_blosc2_decompress_ctx"] = types.ExternalFunction(
        "atlas_blosc2_decompress_ctx", types.int32(types.uintp, types.uintp, types.int32, types.uintp, types.int32)
    )
    g["_blosc2_getitem_ctx"] = types.ExternalFunction(
        "atlas_blosc2_getitem_ctx",
        types.int32(types.uintp, types.uintp, types.int32, types.int32, types.int32, types.uintp, types.int32),
    )
    g["_xxh64_c"] = types.ExternalFunction("atlas_xxh64", types.uint64(types.uintp, types.uintp, types.uint64))
    if _LIB is None:
        return
    llb.add_symbol("atlas_blosc2_decompress_ctx", ctypes.cast(_LIB.blosc2_decompress_ctx, ctypes.c_void_p).value)
    llb.add_symbol("atlas_blosc2_getitem_ctx", ctypes.cast(_LIB.blosc2_getitem_ctx, ctypes.c_void_p).value)
    if _XXH64 is not None:
        llb.add_symbol("atlas_xxh64", ctypes.cast(_XXH64, ctypes.c_void_p).value)
        return
    # A library without that export: the same symbol, served by the jitted hash
    # (compiled here, not cached; only such builds of libblosc2 pay for it).
    jitted = xxh64.dispatcher if isinstance(xxh64, Kernel) else xxh64
    carray = numba.carray

    def fallback(ptr, n, seed):  # seed is always 0
        return jitted(carray(ptr, n, np.uint8))

    g["_xxh64_cfunc"] = numba.cfunc(types.uint64(types.voidptr, types.uintp, types.uint64))(fallback)
    llb.add_symbol("atlas_xxh64", g["_xxh64_cfunc"].address)


_kernels = KernelModule(globals(), setup=_setup_numba)


@_kernels.jit
def _payload_hash(data: np.ndarray) -> np.uint64:
    return _xxh64_c(data.ctypes.data, data.shape[0], np.uint64(0))


#: Status of a chunk whose byte ranges do not fit its buffers (never sent to blosc2).
ERR_BOUNDS = -1000
#: Status of a chunk whose payload does not match its recorded checksum.
ERR_CHECKSUM = -1001
#: Status of a chunk that decoded without error to the wrong number of bytes.
ERR_SIZE = -1002
_INT32_MAX = 2**31 - 1


@_kernels.jit
def decode_chunks(
    ctx: int,
    src: np.ndarray,
    offsets: np.ndarray,
    nbytes: np.ndarray,
    dst: np.ndarray,
    dst_starts: np.ndarray,
    raw_nbytes: np.ndarray,
    status: np.ndarray,
) -> None:
    """Decompress chunk ``i`` (``src[offsets[i]:][:nbytes[i]]``) into ``dst[dst_starts[i]:][:raw_nbytes[i]]``.

    ``status[i]`` receives the decompressed size (equal to ``raw_nbytes[i]`` on
    success), a negative libblosc2 error code, or :data:`ERR_BOUNDS`.  The true
    source length is always passed, so damaged input cannot read out of bounds.
    """
    src_base = src.ctypes.data
    dst_base = dst.ctypes.data
    for i in range(offsets.shape[0]):
        off, cb, doff, nb = offsets[i], nbytes[i], dst_starts[i], raw_nbytes[i]
        src_ok = off >= 0 and 0 < cb <= _INT32_MAX and off + cb <= src.shape[0]
        dst_ok = doff >= 0 and 0 <= nb <= _INT32_MAX and doff + nb <= dst.shape[0]
        if not (src_ok and dst_ok):
            status[i] = ERR_BOUNDS
        else:
            status[i] = _blosc2_decompress_ctx(ctx, src_base + off, np.int32(cb), dst_base + doff, np.int32(nb))


@_kernels.jit
def read_pieces(
    ctx: int,
    src: np.ndarray,
    payloads: Payloads,
    itemsize: int,
    scratch: np.ndarray,
    pieces: Pieces,
    status: np.ndarray,
) -> None:
    """Verify, decode and scatter stored chunks into a stacked output, one piece at a time.

    Everything is in bytes, so one compiled kernel serves every dtype: ``src``,
    ``scratch`` and ``pieces.dst`` are flat uint8 arrays and ``pieces`` is the byte
    geometry of the output's pieces (:meth:`~atlas.engine.pieces.Pieces.as_bytes`:
    the innermost axis and the bases scaled by ``itemsize``, the output's item size).

    Piece ``p``'s payload (see :class:`~atlas.engine.pieces.Payloads`) lies in ``src``
    and its XXH64 must match.  A raw payload (its offset a multiple of ``itemsize``)
    is copied straight from ``src``; a compressed one is decoded, in full or only its
    item range, to the start of ``scratch``; either way its box is copied to the
    output as ``pieces`` says.

    Decoding chunk by chunk into one small scratch keeps the decoded bytes in cache for
    the copy.  ``status[p]`` is 0 on success, :data:`ERR_CHECKSUM`, :data:`ERR_BOUNDS`,
    :data:`ERR_SIZE` or a negative libblosc2 error code; a failed piece leaves its part
    of the output undefined (the caller raises).
    """
    offsets, nbytes, first, count = payloads.offsets, payloads.nbytes, payloads.first, payloads.count
    chunk_shapes, in_chunk, boxes = pieces.chunk_shapes, pieces.in_chunk, pieces.boxes
    sel_shape, in_selection, dst_bases, dst = pieces.sel_shape, pieces.in_selection, pieces.dst_bases, pieces.dst
    src_base = src.ctypes.data
    scratch_base = scratch.ctypes.data
    for p in range(offsets.shape[0]):
        off, cb = offsets[p], nbytes[p]
        cells = 1  # bytes of the chunk's cells (the innermost extent is in bytes)
        for d in range(chunk_shapes.shape[1]):
            cells *= chunk_shapes[p, d]
        if off < 0 or cb < 0 or off + cb > src.shape[0]:
            status[p] = ERR_BOUNDS
            continue
        if _payload_hash(src[off : off + cb]) != payloads.checksums[p]:
            status[p] = ERR_CHECKSUM
            continue
        if payloads.raw[p]:
            if off % itemsize or cb < cells:
                status[p] = ERR_BOUNDS
                continue
            copy_box_at(
                src, off, chunk_shapes[p], in_chunk[p], boxes[p], sel_shape, in_selection[p], dst, dst_bases[p]
            )
            status[p] = 0
            continue
        if cb > _INT32_MAX:
            status[p] = ERR_BOUNDS
            continue
        if count[p] > 0:
            want = count[p] * itemsize
            bad_range = first[p] < 0 or want + first[p] * itemsize > cells
            if bad_range or want > scratch.shape[0] or first[p] > _INT32_MAX or want > _INT32_MAX:
                status[p] = ERR_BOUNDS
                continue
            got = _blosc2_getitem_ctx(
                ctx, src_base + off, np.int32(cb), np.int32(first[p]), np.int32(count[p]), scratch_base, np.int32(want)
            )
            base = -first[p] * itemsize
        else:
            want = payloads.raw_nbytes[p]
            if want < cells or want > scratch.shape[0] or want > _INT32_MAX:
                status[p] = ERR_BOUNDS
                continue
            got = _blosc2_decompress_ctx(ctx, src_base + off, np.int32(cb), scratch_base, np.int32(want))
            base = 0
        if got != want:
            status[p] = got if got < 0 else ERR_SIZE
            continue
        # base may be negative: every cell of the box lies at or after item first[p].
        copy_box_at(
            scratch, base, chunk_shapes[p], in_chunk[p], boxes[p], sel_shape, in_selection[p], dst, dst_bases[p]
        )
        status[p] = 0


def read_pieces_compiled() -> bool:
    """Whether :func:`read_pieces` has machine code in this process already."""
    return _kernels.bound and bool(globals()["read_pieces"].signatures)


def read_pieces_py(
    ctx: int,
    src: np.ndarray,
    payloads: Payloads,
    itemsize: int,
    scratch: np.ndarray,
    pieces: Pieces,
    status: np.ndarray,
) -> None:
    """:func:`read_pieces` without numba: the same arguments, checks and statuses.

    The C functions are called through ctypes and each box is copied by numpy, a
    few microseconds of Python per piece: cheaper than compiling the kernel (a
    second or more on an empty numba cache) or even importing numba, for the small
    batches it serves (see :func:`atlas.engine.gather.read_pieces_many`).
    """
    _ensure_loaded()
    lib = _LIB
    offsets, nbytes, first, count = payloads.offsets, payloads.nbytes, payloads.first, payloads.count
    in_chunk, boxes, in_selection, dst_bases, dst = (
        pieces.in_chunk, pieces.boxes, pieces.in_selection, pieces.dst_bases, pieces.dst
    )
    src_base = src.ctypes.data
    scratch_base = scratch.ctypes.data
    sel = pieces.sel_shape.tolist()
    for p in range(offsets.shape[0]):
        off, cb = int(offsets[p]), int(nbytes[p])
        shape = pieces.chunk_shapes[p].tolist()
        cells = 1  # bytes of the chunk's cells (the innermost extent is in bytes)
        for extent in shape:
            cells *= extent
        if off < 0 or cb < 0 or off + cb > src.shape[0]:
            status[p] = ERR_BOUNDS
            continue
        if payload_xxh64(src[off : off + cb]) != int(payloads.checksums[p]):
            status[p] = ERR_CHECKSUM
            continue
        if payloads.raw[p]:
            if off % itemsize or cb < cells:
                status[p] = ERR_BOUNDS
                continue
            _copy_box(src, off, shape, in_chunk[p], boxes[p], sel, in_selection[p], dst, int(dst_bases[p]))
            status[p] = 0
            continue
        if cb > _INT32_MAX:
            status[p] = ERR_BOUNDS
            continue
        if count[p] > 0:
            lo, n = int(first[p]), int(count[p])
            want = n * itemsize
            bad_range = lo < 0 or want + lo * itemsize > cells
            if bad_range or want > scratch.shape[0] or lo > _INT32_MAX or want > _INT32_MAX:
                status[p] = ERR_BOUNDS
                continue
            got = lib.blosc2_getitem_ctx(ctx, src_base + off, cb, lo, n, scratch_base, want)  # type: ignore[union-attr]
            base = -lo * itemsize
        else:
            want = int(payloads.raw_nbytes[p])
            if want < cells or want > scratch.shape[0] or want > _INT32_MAX:
                status[p] = ERR_BOUNDS
                continue
            got = lib.blosc2_decompress_ctx(ctx, src_base + off, cb, scratch_base, want)  # type: ignore[union-attr]
            base = 0
        if got != want:
            status[p] = got if got < 0 else ERR_SIZE
            continue
        _copy_box(scratch, base, shape, in_chunk[p], boxes[p], sel, in_selection[p], dst, int(dst_bases[p]))
        status[p] = 0


def _copy_box(
    src: np.ndarray,
    src_base: int,
    src_shape: list[int],
    src_start: np.ndarray,
    box: np.ndarray,
    dst_shape: list[int],
    dst_start: np.ndarray,
    dst: np.ndarray,
    dst_base: int,
) -> None:
    """:func:`atlas.engine.kernels.copy_box_at` on flat uint8 arrays, as two strided numpy views."""
    extent = box.tolist()
    if 0 in extent:
        return
    target = _box_view(dst, dst_base, dst_shape, dst_start.tolist(), extent)
    target[...] = _box_view(src, src_base, src_shape, src_start.tolist(), extent)


def _box_view(buf: np.ndarray, base: int, shape: list[int], start: list[int], box: list[int]) -> np.ndarray:
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    offset = base + sum(s * t for s, t in zip(start, strides))
    return np.ndarray(tuple(box), np.uint8, buffer=buf, offset=offset, strides=tuple(strides))


_local = threading.local()


def thread_context() -> int:
    """This thread's decompression context (created on first use, per process)."""
    _ensure_loaded()
    pid = os.getpid()
    ctx = getattr(_local, "ctx", None)
    if ctx is None or _local.pid != pid:  # a forked child never reuses the parent's contexts
        params = _DParams()
        params.nthreads = 1
        ctx = _LIB.blosc2_create_dctx(params)  # type: ignore[union-attr]
        if not ctx:
            raise MemoryError("blosc2_create_dctx failed")
        _local.ctx, _local.pid = ctx, pid
    return int(ctx)
