"""The libblosc2 bridge: decoding many blosc2 chunks from one jitted call, through its C API.

The python-blosc2 wheel ships ``libblosc2`` next to its extension module.  We load
that library with :mod:`ctypes` (``RTLD_LOCAL``, so its bundled zstd/lz4 symbols
interpose on nothing), register the addresses of the few C functions we call
under private symbol names with LLVM, and call them from ``@numba.njit(nogil=True)``
code as external functions.  Referring to the functions *by name* keeps the
kernel cacheable on disk (a ctypes pointer would be baked in as a constant and
defeat ``cache=True``).

Each thread decodes with its own single-threaded decompression context
(``blosc2_decompress_ctx`` is re-entrant per context), so several threads
decode in parallel with the GIL released.  When the library cannot be found,
:data:`AVAILABLE` is False and callers fall back to ``blosc2.decompress2``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

import numba
import numpy as np
from numba import types

from atlas.engine.kernels import copy_box_at, xxh64
from atlas.engine.pieces import Payloads, Pieces

__all__ = [
    "AVAILABLE",
    "ERR_BOUNDS",
    "ERR_CHECKSUM",
    "ERR_SIZE",
    "UNAVAILABLE_REASON",
    "decode_chunks",
    "read_pieces",
    "thread_context",
]

AVAILABLE = False
UNAVAILABLE_REASON = ""


def _library_candidates() -> list[Path]:
    import blosc2

    pkg = Path(blosc2.__file__).parent
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


def _load() -> ctypes.CDLL | None:
    global UNAVAILABLE_REASON
    if os.environ.get("ATLAS_NO_NATIVE"):
        UNAVAILABLE_REASON = "disabled by ATLAS_NO_NATIVE"
        return None
    errors = []
    for path in _library_candidates():
        try:
            lib = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_LOCAL", 0) | getattr(os, "RTLD_NOW", 0))
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        if all(hasattr(lib, s) for s in ("blosc2_init", "blosc2_create_dctx", "blosc2_decompress_ctx")):
            return lib
        errors.append(f"{path}: missing symbols")
    UNAVAILABLE_REASON = "; ".join(errors) or "libblosc2 not found in the blosc2 package"
    return None


_LIB = _load()
if _LIB is not None:
    import llvmlite.binding as llb

    _LIB.blosc2_init.argtypes = []
    _LIB.blosc2_init.restype = None
    _LIB.blosc2_init()
    _LIB.blosc2_create_dctx.argtypes = [_DParams]
    _LIB.blosc2_create_dctx.restype = ctypes.c_void_p
    _LIB.blosc2_free_ctx.argtypes = [ctypes.c_void_p]
    _LIB.blosc2_free_ctx.restype = None
    _decompress = _LIB.blosc2_decompress_ctx
    _decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32]
    _decompress.restype = ctypes.c_int32
    llb.add_symbol("atlas_blosc2_decompress_ctx", ctypes.cast(_decompress, ctypes.c_void_p).value)
    _getitem = _LIB.blosc2_getitem_ctx
    _getitem.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int32,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int32,
    ]
    _getitem.restype = ctypes.c_int
    llb.add_symbol("atlas_blosc2_getitem_ctx", ctypes.cast(_getitem, ctypes.c_void_p).value)
    AVAILABLE = True

_blosc2_decompress_ctx = types.ExternalFunction(
    "atlas_blosc2_decompress_ctx", types.int32(types.uintp, types.uintp, types.int32, types.uintp, types.int32)
)

_blosc2_getitem_ctx = types.ExternalFunction(
    "atlas_blosc2_getitem_ctx",
    types.int32(types.uintp, types.uintp, types.int32, types.int32, types.int32, types.uintp, types.int32),
)

#: Status of a chunk whose byte ranges do not fit its buffers (never sent to blosc2).
ERR_BOUNDS = -1000
#: Status of a chunk whose payload does not match its recorded checksum.
ERR_CHECKSUM = -1001
#: Status of a chunk that decoded without error to the wrong number of bytes.
ERR_SIZE = -1002
_INT32_MAX = 2**31 - 1


@numba.njit(nogil=True, cache=True)
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


@numba.njit(nogil=True, cache=True)
def read_pieces(
    ctx: int,
    src: np.ndarray,
    typed_src: np.ndarray,
    payloads: Payloads,
    scratch: np.ndarray,
    typed_scratch: np.ndarray,
    pieces: Pieces,
    status: np.ndarray,
) -> None:
    """Verify, decode and scatter stored chunks into a stacked output, one piece at a time.

    Piece ``p``'s payload (see :class:`~atlas.engine.pieces.Payloads`) lies in ``src``;
    ``typed_src`` is the same bytes typed as the output (a raw payload is copied
    straight from it; the caller checked its length and alignment).  A compressed
    payload is decoded, in full or only its item range, to the start of ``scratch``
    (``typed_scratch`` is the same memory typed), and its box is copied to the output
    as :class:`~atlas.engine.pieces.Pieces` says.

    Decoding chunk by chunk into one small scratch keeps the decoded bytes in cache for
    the copy.  ``status[p]`` is 0 on success, :data:`ERR_CHECKSUM`, :data:`ERR_BOUNDS`,
    :data:`ERR_SIZE` or a negative libblosc2 error code; a failed piece leaves its part
    of the output undefined (the caller raises).
    """
    offsets, nbytes, first, count = payloads.offsets, payloads.nbytes, payloads.first, payloads.count
    chunk_shapes, in_chunk, boxes = pieces.chunk_shapes, pieces.in_chunk, pieces.boxes
    sel_shape, in_selection, dst_bases, dst = pieces.sel_shape, pieces.in_selection, pieces.dst_bases, pieces.dst
    itemsize = typed_src.itemsize
    src_base = src.ctypes.data
    scratch_base = scratch.ctypes.data
    for p in range(offsets.shape[0]):
        off, cb = offsets[p], nbytes[p]
        cells = 1
        for d in range(chunk_shapes.shape[1]):
            cells *= chunk_shapes[p, d]
        if off < 0 or cb < 0 or off + cb > src.shape[0]:
            status[p] = ERR_BOUNDS
            continue
        if xxh64(src[off : off + cb]) != payloads.checksums[p]:
            status[p] = ERR_CHECKSUM
            continue
        if payloads.raw[p]:
            if off % itemsize or cb < cells * itemsize or cb > typed_src.shape[0] * itemsize - off:
                status[p] = ERR_BOUNDS
                continue
            copy_box_at(
                typed_src,
                off // itemsize,
                chunk_shapes[p],
                in_chunk[p],
                boxes[p],
                sel_shape,
                in_selection[p],
                dst,
                dst_bases[p],
            )
            status[p] = 0
            continue
        if cb > _INT32_MAX:
            status[p] = ERR_BOUNDS
            continue
        if count[p] > 0:
            want = count[p] * itemsize
            bad_range = first[p] < 0 or first[p] + count[p] > cells
            if bad_range or want > scratch.shape[0] or first[p] > _INT32_MAX or want > _INT32_MAX:
                status[p] = ERR_BOUNDS
                continue
            got = _blosc2_getitem_ctx(
                ctx, src_base + off, np.int32(cb), np.int32(first[p]), np.int32(count[p]), scratch_base, np.int32(want)
            )
            base = -first[p]
        else:
            want = payloads.raw_nbytes[p]
            if want < cells * itemsize or want > scratch.shape[0] or want > _INT32_MAX:
                status[p] = ERR_BOUNDS
                continue
            got = _blosc2_decompress_ctx(ctx, src_base + off, np.int32(cb), scratch_base, np.int32(want))
            base = 0
        if got != want:
            status[p] = got if got < 0 else ERR_SIZE
            continue
        # base may be negative: every cell of the box lies at or after item first[p].
        copy_box_at(
            typed_scratch, base, chunk_shapes[p], in_chunk[p], boxes[p], sel_shape, in_selection[p], dst, dst_bases[p]
        )
        status[p] = 0


_local = threading.local()


def thread_context() -> int:
    """This thread's decompression context (created on first use, per process)."""
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
