"""The numba kernels of :mod:`atlas.engine.kernels` against numpy references.

Every kernel (``copy_box_at``, ``_fill_box_at``, ``stats_float``, ``stats_int``
and the batched ``scatter_pieces``, ``fill_pieces``, ``xxh64_many``) runs jitted
and through ``.py_func`` (the same source as plain Python), except ``xxh64`` whose
jitted version is checked against the ``xxhash`` package; the stats kernels also
against their numpy twins in :mod:`atlas.engine.chunks`.  Arguments are passed the
way :mod:`atlas.engine.gather`, :mod:`atlas.engine.libblosc2` and :mod:`atlas.engine.chunks`
pass them: flat C-ordered data, ``int64`` shape/start/box vectors, bool data viewed
as ``uint8``, the fill value of ``stats_int`` in the dtype of the values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas import dtypes
from atlas.engine import chunks, kernels
from atlas.engine.chunks import chunk_stats
from atlas.metadata import ArrayMeta

MODES = ["jit", "py"]
#: The stats kernels also have a numpy twin that chunks.py uses for small chunks.
STATS_MODES = ["jit", "py", "numpy"]
HYP = settings(max_examples=50, deadline=None)
NO_MASK = np.zeros(0, np.uint8)
NAT = int(np.iinfo(np.int64).min)
COPY_DTYPES = ["float32", "float64", "int8", "uint64", "bool"]


def kernel(name: str, mode: str):
    if mode == "numpy":
        return {"stats_float": chunks._stats_float_numpy, "stats_int": chunks._stats_int_numpy}[name]
    fn = getattr(kernels, name)
    return fn if mode == "jit" else fn.py_func


def vec(values) -> np.ndarray:
    """A shape/start/box vector as the engine builds it (int64, also for rank 0)."""
    return np.asarray(tuple(values), dtype=np.int64)


def flat(arr: np.ndarray) -> np.ndarray:
    """What ``arrays._flat`` hands to the kernels: a flat view, bool as uint8."""
    out = arr.reshape(-1)
    return out.view(np.uint8) if out.dtype == np.bool_ else out


def random_values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    n = math.prod(shape)
    if dtype == "bool":
        out = rng.integers(0, 2, n).astype(bool)
    elif dtype.startswith("float"):
        out = rng.standard_normal(n).astype(dtype) * 100
        if n:
            out[rng.integers(0, n, max(1, n // 7))] = np.nan
    else:
        info = np.iinfo(dtype)
        out = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    return out.reshape(shape)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality, NaN payloads and signed zeros included."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def slices(start, box) -> tuple[slice, ...]:
    return tuple(slice(int(s), int(s) + int(b)) for s, b in zip(start, box, strict=True))


def random_box(rng: np.random.Generator, rank: int, allow_empty: bool = True):
    """A box and two arrays (source, destination) it fits in at random offsets."""
    lo = 0 if allow_empty else 1
    box = tuple(int(rng.integers(lo, 6)) for _ in range(rank))
    src_start = tuple(int(rng.integers(0, 4)) for _ in range(rank))
    dst_start = tuple(int(rng.integers(0, 4)) for _ in range(rank))
    src_shape = tuple(s + b + int(rng.integers(0, 4)) for s, b in zip(src_start, box, strict=True))
    dst_shape = tuple(s + b + int(rng.integers(0, 4)) for s, b in zip(dst_start, box, strict=True))
    return box, src_shape, src_start, dst_shape, dst_start


# -- copy_box_at ------------------------------------------------------------------------------------


def run_copy(mode, src, src_start, box, dst, dst_start) -> np.ndarray:
    """Run copy_box_at (both bases 0) on copies; also check the source is left alone."""
    src_before = src.copy()
    out = dst.copy()
    kernel("copy_box_at", mode)(
        flat(src), 0, vec(src.shape), vec(src_start), vec(box), vec(out.shape), vec(dst_start), flat(out), 0
    )
    assert same_bits(src, src_before), "copy_box_at changed its source"
    return out


def ref_copy(src, src_start, box, dst, dst_start) -> np.ndarray:
    out = dst.copy()
    if src.ndim == 0:
        out[()] = src[()]
    else:
        out[slices(dst_start, box)] = src[slices(src_start, box)]
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", COPY_DTYPES)
@pytest.mark.parametrize("rank", [0, 1, 2, 3, 4])
def test_copy_box_random(mode, dtype, rank):
    rng = np.random.default_rng(1000 * rank + COPY_DTYPES.index(dtype))
    for _ in range(25 if mode == "jit" else 8):
        box, src_shape, src_start, dst_shape, dst_start = random_box(rng, rank)
        src = random_values(rng, dtype, src_shape)
        dst = random_values(rng, dtype, dst_shape)
        got = run_copy(mode, src, src_start, box, dst, dst_start)
        want = ref_copy(src, src_start, box, dst, dst_start)
        assert same_bits(got, want), (box, src_shape, src_start, dst_shape, dst_start)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", COPY_DTYPES)
def test_copy_box_edge_cases(mode, dtype):
    rng = np.random.default_rng(7)
    # the whole array onto the whole array
    src = random_values(rng, dtype, (3, 4, 5))
    dst = random_values(rng, dtype, (3, 4, 5))
    assert same_bits(run_copy(mode, src, (0, 0, 0), (3, 4, 5), dst, (0, 0, 0)), src)
    # a box that is empty along one axis changes nothing, even on an empty array
    for box in [(0, 4, 5), (3, 0, 5), (3, 4, 0)]:
        assert same_bits(run_copy(mode, src, (0, 0, 0), box, dst, (0, 0, 0)), dst)
    empty = random_values(rng, dtype, (2, 0, 3))
    assert same_bits(run_copy(mode, empty, (0, 0, 0), (2, 0, 3), empty, (0, 0, 0)), empty)
    # the far corner: last cell of src to the first of dst and back
    got = run_copy(mode, src, (2, 3, 4), (1, 1, 1), dst, (0, 0, 0))
    assert same_bits(got, ref_copy(src, (2, 3, 4), (1, 1, 1), dst, (0, 0, 0)))
    got = run_copy(mode, src, (0, 0, 0), (1, 1, 1), dst, (2, 3, 4))
    assert same_bits(got, ref_copy(src, (0, 0, 0), (1, 1, 1), dst, (2, 3, 4)))
    # an inner run of one cell (the innermost axis of the box has length 1)
    got = run_copy(mode, src, (0, 1, 2), (3, 2, 1), dst, (0, 0, 4))
    assert same_bits(got, ref_copy(src, (0, 1, 2), (3, 2, 1), dst, (0, 0, 4)))
    # rank 0: the single cell is copied
    s0, d0 = random_values(rng, dtype, ()), random_values(rng, dtype, ())
    assert same_bits(run_copy(mode, s0, (), (), d0, ()), s0)


def test_copy_box_extreme_values_are_copied_bit_exactly():
    src = np.array([np.nan, -0.0, np.inf, -np.inf, 5e-324], np.float64)
    src[0] = np.frombuffer(b"\x01\x00\x00\x00\x00\x00\xf8\x7f", np.float64)[0]  # a NaN with a payload
    dst = np.zeros(7, np.float64)
    for mode in MODES:
        got = run_copy(mode, src, (0,), (5,), dst, (2,))
        assert got[2:].tobytes() == src.tobytes() and not got[:2].any()
    big = np.array([2**64 - 1, 2**63, 0], np.uint64)
    for mode in MODES:
        got = run_copy(mode, big, (0,), (3,), np.zeros(3, np.uint64), (0,))
        assert got.tolist() == [2**64 - 1, 2**63, 0]


@st.composite
def copy_case(draw):
    rank = draw(st.integers(0, 4))
    box = tuple(draw(st.lists(st.integers(0, 4), min_size=rank, max_size=rank)))
    src_start = tuple(draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank)))
    dst_start = tuple(draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank)))
    src_pad = draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank))
    dst_pad = draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank))
    src_shape = tuple(s + b + p for s, b, p in zip(src_start, box, src_pad, strict=True))
    dst_shape = tuple(s + b + p for s, b, p in zip(dst_start, box, dst_pad, strict=True))
    dtype = draw(st.sampled_from(COPY_DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    return dtype, box, src_shape, src_start, dst_shape, dst_start, seed


@pytest.mark.parametrize("mode", MODES)
@HYP
@given(case=copy_case())
def test_copy_box_property(mode, case):
    dtype, box, src_shape, src_start, dst_shape, dst_start, seed = case
    rng = np.random.default_rng(seed)
    src = random_values(rng, dtype, src_shape)
    dst = random_values(rng, dtype, dst_shape)
    got = run_copy(mode, src, src_start, box, dst, dst_start)
    assert same_bits(got, ref_copy(src, src_start, box, dst, dst_start))


def test_copy_box_round_trip_through_a_chunk():
    """Write a box into a chunk and read it back, as a write and a read do."""
    rng = np.random.default_rng(3)
    data = random_values(rng, "float32", (4, 5, 6))
    chunk = np.full((6, 7, 8), np.float32(-1))
    chunk_after = run_copy("jit", data, (0, 0, 0), (4, 5, 6), chunk, (1, 2, 2))
    back = run_copy("jit", chunk_after, (1, 2, 2), (4, 5, 6), np.zeros_like(data), (0, 0, 0))
    assert same_bits(back, data)


# -- scatter_pieces, fill_pieces (the batched forms bulk reads use) ------------------------------------


def random_pieces(rng: np.random.Generator, rank: int, members: int, pieces: int):
    """Chunks laid out one after another in ``src`` and boxes into stacked selections."""
    sel_shape = tuple(int(rng.integers(1, 6)) for _ in range(rank))
    cells = math.prod(sel_shape)
    rows = {k: [] for k in ("chunk_shape", "in_chunk", "box", "in_selection", "src_offset", "dst_base")}
    offset = 0
    for _ in range(pieces):
        box = tuple(int(rng.integers(0, n + 1)) for n in sel_shape)
        in_sel = tuple(int(rng.integers(0, n - b + 1)) for n, b in zip(sel_shape, box, strict=True))
        in_chunk = tuple(int(rng.integers(0, 3)) for _ in range(rank))
        chunk_shape = tuple(i + b + int(rng.integers(0, 3)) for i, b in zip(in_chunk, box, strict=True))
        offset += int(rng.integers(0, 4))  # gaps between chunks in the source
        for key, val in zip(rows, (chunk_shape, in_chunk, box, in_sel, offset, int(rng.integers(0, members)) * cells)):
            rows[key].append(val)
        offset += math.prod(chunk_shape)
    as2d = lambda key: np.array(rows[key], np.int64).reshape(pieces, rank)  # noqa: E731
    return (
        sel_shape,
        offset,
        as2d("chunk_shape"),
        as2d("in_chunk"),
        as2d("box"),
        as2d("in_selection"),
        np.array(rows["src_offset"], np.int64),
        np.array(rows["dst_base"], np.int64),
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", COPY_DTYPES)
@pytest.mark.parametrize("rank", [0, 1, 2, 3, 4])
def test_scatter_pieces_random(mode, dtype, rank):
    rng = np.random.default_rng(900 + 10 * rank + COPY_DTYPES.index(dtype))
    for _ in range(10 if mode == "jit" else 3):
        members, pieces = int(rng.integers(1, 4)), int(rng.integers(0, 7))
        sel_shape, src_len, chunk_shapes, in_chunk, boxes, in_sel, src_offsets, bases = random_pieces(
            rng, rank, members, pieces
        )
        src = random_values(rng, dtype, (src_len,))
        dst = random_values(rng, dtype, (members, *sel_shape))
        want = dst.copy()
        for p in range(pieces):
            chunk = src[src_offsets[p] : src_offsets[p] + math.prod(chunk_shapes[p])].reshape(tuple(chunk_shapes[p]))
            target = want[int(bases[p]) // max(1, math.prod(sel_shape))]
            if rank == 0:
                want[int(bases[p])] = chunk[()]
            else:
                target[slices(in_sel[p], boxes[p])] = chunk[slices(in_chunk[p], boxes[p])]
        out = dst.copy()
        src_before = src.copy()
        kernel("scatter_pieces", mode)(
            flat(src), src_offsets, chunk_shapes, in_chunk, boxes, vec(sel_shape), in_sel, bases, flat(out)
        )
        assert same_bits(src, src_before)
        assert same_bits(out, want), (sel_shape, chunk_shapes, in_chunk, boxes, in_sel, src_offsets, bases)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", COPY_DTYPES)
@pytest.mark.parametrize("rank", [0, 1, 3])
def test_fill_pieces_random(mode, dtype, rank):
    rng = np.random.default_rng(950 + 10 * rank + COPY_DTYPES.index(dtype))
    for _ in range(10 if mode == "jit" else 3):
        members, pieces = int(rng.integers(1, 4)), int(rng.integers(0, 7))
        sel_shape, _, _, _, boxes, in_sel, _, bases = random_pieces(rng, rank, members, pieces)
        values = random_values(rng, dtype, (pieces,))
        dst = random_values(rng, dtype, (members, *sel_shape))
        want = dst.copy()
        for p in range(pieces):
            if rank == 0:
                want[int(bases[p])] = values[p]
            else:
                want[int(bases[p]) // math.prod(sel_shape)][slices(in_sel[p], boxes[p])] = values[p]
        out = dst.copy()
        kernel("fill_pieces", mode)(flat(values), boxes, vec(sel_shape), in_sel, bases, flat(out))
        assert same_bits(out, want), (sel_shape, boxes, in_sel, bases)


# -- _fill_box_at (the box of fill_pieces) ----------------------------------------------------------


def fill_value_for(rng: np.random.Generator, dtype: str):
    if dtype == "bool":
        return np.uint8(1)
    if dtype.startswith("float"):
        return np.dtype(dtype).type(rng.choice([np.nan, -0.0, np.inf, 1.5]))
    info = np.iinfo(dtype)
    return np.dtype(dtype).type([info.min, info.max, 0][int(rng.integers(0, 3))])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", COPY_DTYPES)
@pytest.mark.parametrize("rank", [0, 1, 2, 3, 4])
def test_fill_box_random(mode, dtype, rank):
    rng = np.random.default_rng(77 + 10 * rank + COPY_DTYPES.index(dtype))
    for _ in range(20 if mode == "jit" else 6):
        box, _, _, dst_shape, dst_start = random_box(rng, rank)
        dst = random_values(rng, dtype, dst_shape)
        value = fill_value_for(rng, dtype)
        out = dst.copy()
        kernel("_fill_box_at", mode)(value, vec(box), vec(dst_shape), vec(dst_start), flat(out), 0)
        want = dst.copy()
        fill = value.view(np.bool_) if dtype == "bool" else value
        if rank == 0:
            want[()] = fill
        else:
            want[slices(dst_start, box)] = fill
        assert same_bits(out, want), (box, dst_shape, dst_start, value)


# -- stats_float ----------------------------------------------------------------------------------


def ref_stats_float(values, fill, use_fill, written):
    wide = values.astype(np.float64)
    null = np.isnan(wide)
    if use_fill:
        null |= wide == fill
    if written.shape[0]:
        null |= written == 0
    valid = wide[~null]
    if valid.size == 0:
        return int(null.sum()), math.nan, math.nan
    return int(null.sum()), float(valid.min()), float(valid.max())


def check_stats_float(mode, values, fill, use_fill, written):
    got = kernel("stats_float", mode)(values, float(fill), use_fill, written)
    want = ref_stats_float(values, float(fill), use_fill, written)
    assert int(got[0]) == want[0], (values, fill, use_fill, written, got, want)
    for g, w in zip(got[1:], want[1:], strict=True):
        assert (math.isnan(g) and math.isnan(w)) or g == w, (values, fill, use_fill, written, got, want)
    return got


@pytest.mark.parametrize("mode", STATS_MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stats_float_random(mode, dtype):
    rng = np.random.default_rng(21 if dtype == "float32" else 22)
    for _ in range(60 if mode == "jit" else 20):
        n = int(rng.integers(0, 40))
        values = (rng.integers(-5, 6, n) * 0.25).astype(dtype)  # repeats, so the fill occurs
        if n:
            values[rng.random(n) < 0.15] = np.nan
            values[rng.random(n) < 0.05] = rng.choice([np.inf, -np.inf])
        fill = float(values[rng.integers(0, n)]) if n and rng.random() < 0.7 else 0.25
        written = rng.integers(0, 2, n).astype(np.uint8) if rng.random() < 0.5 else NO_MASK
        check_stats_float(mode, values, fill, bool(rng.random() < 0.6), written)


@pytest.mark.parametrize("mode", STATS_MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stats_float_cases(mode, dtype):
    f = np.dtype(dtype).type
    arr = lambda *v: np.array(v, dtype)  # noqa: E731
    # NaN cells are null, with or without a fill value
    assert check_stats_float(mode, arr(np.nan, 1.0, -3.0), 0.0, False, NO_MASK) == (1, -3.0, 1.0)
    # the fill value is null only when use_fill is set
    assert check_stats_float(mode, arr(2.0, 5.0, 2.0), 2.0, True, NO_MASK) == (2, 5.0, 5.0)
    assert check_stats_float(mode, arr(2.0, 5.0, 2.0), 2.0, False, NO_MASK) == (0, 2.0, 5.0)
    # a NaN fill value does not make numbers null
    assert check_stats_float(mode, arr(np.nan, 4.0), math.nan, True, NO_MASK) == (1, 4.0, 4.0)
    # -0.0 equals a 0.0 fill
    assert check_stats_float(mode, arr(-0.0, 1.0), 0.0, True, NO_MASK)[0] == 1
    # the written mask: unwritten cells are null whatever they hold
    assert check_stats_float(mode, arr(9.0, 1.0, 7.0), 0.0, False, np.array([0, 1, 1], np.uint8)) == (1, 1.0, 7.0)
    # infinities are valid values
    assert check_stats_float(mode, arr(np.inf, -np.inf, np.nan), 0.0, False, NO_MASK) == (1, -math.inf, math.inf)
    assert check_stats_float(mode, arr(np.inf, np.inf), 0.0, False, NO_MASK) == (0, math.inf, math.inf)
    assert check_stats_float(mode, arr(-np.inf), 0.0, False, NO_MASK) == (0, -math.inf, -math.inf)
    # extremes of the dtype survive as floats
    big = float(np.finfo(dtype).max)
    assert check_stats_float(mode, arr(big, -big), 0.0, False, NO_MASK) == (0, -big, big)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    assert check_stats_float(mode, arr(tiny, 0.0), 0.0, True, NO_MASK) == (1, tiny, tiny)
    # float32: a fill given as the float32-rounded float (as chunks.py passes it) matches
    assert check_stats_float(mode, arr(0.1, 0.2), float(f(0.1)), True, NO_MASK)[0] == 1
    # all null: NaN min/max, in every way a cell can be null, and the empty chunk
    for values, fill, use_fill, mask in [
        (arr(np.nan, np.nan), 0.0, False, NO_MASK),
        (arr(3.0, 3.0), 3.0, True, NO_MASK),
        (arr(3.0, 4.0), 0.0, False, np.zeros(2, np.uint8)),
        (arr(np.nan, 3.0, 4.0), 3.0, True, np.array([1, 1, 0], np.uint8)),
        (arr(), 0.0, True, NO_MASK),
    ]:
        nulls, lo, hi = check_stats_float(mode, values, fill, use_fill, mask)
        assert nulls == values.shape[0] and math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("mode", STATS_MODES)
@HYP
@given(
    values=st.lists(st.one_of(st.floats(width=32), st.sampled_from([0.0, -0.0, 1.0, 2.5])), min_size=0, max_size=30),
    dtype=st.sampled_from(["float32", "float64"]),
    use_fill=st.booleans(),
    fill_index=st.integers(0, 40),
    mask_seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_stats_float_property(mode, values, dtype, use_fill, fill_index, mask_seed):
    arr = np.array(values, dtype)
    fill = float(arr[fill_index]) if fill_index < arr.size else 2.5
    written = NO_MASK if mask_seed is None else np.random.default_rng(mask_seed).integers(0, 2, arr.size, np.uint8)
    check_stats_float(mode, arr, fill, use_fill, written)


# -- stats_int ------------------------------------------------------------------------------------


def ref_stats_int(values, fill, use_fill, nat, written):
    null = np.zeros(values.shape, bool)
    if use_fill:
        null |= values == fill
    if nat:
        null |= values.view(np.int64) == NAT
    if written.shape[0]:
        null |= written == 0
    valid = values[~null]
    if valid.size == 0:
        return int(null.sum()), 0, None, None
    return int(null.sum()), int(valid.size), int(valid.min()), int(valid.max())


def check_stats_int(mode, values, fill, use_fill, nat, written):
    assert isinstance(fill, np.generic) and fill.dtype == values.dtype  # the kernel's contract
    got = kernel("stats_int", mode)(values, fill, use_fill, nat, written)
    nulls, valid, lo, hi = (int(x) for x in got)
    want = ref_stats_int(values, fill, use_fill, nat, written)
    assert (nulls, valid) == want[:2], (values, fill, use_fill, nat, written, got, want)
    if valid:
        assert (lo, hi) == want[2:], (values, fill, use_fill, nat, written, got, want)
    return nulls, valid, lo, hi


INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]


def int_values(rng, dtype, n):
    if dtype == "bool":
        return rng.integers(0, 2, n).astype(np.uint8)  # bool chunks arrive as a uint8 view
    info = np.iinfo(dtype)
    pool = np.array(
        [info.min, info.max, 0, 1, info.max - 1, info.min + 1, info.max // 2 + 1], dtype=dtype
    )  # extremes, and values past int64 for uint64
    out = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    pick = rng.random(n) < 0.4
    out[pick] = rng.choice(pool, int(pick.sum()))
    return out


@pytest.mark.parametrize("mode", STATS_MODES)
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_stats_int_random(mode, dtype):
    rng = np.random.default_rng(300 + INT_DTYPES.index(dtype))
    for _ in range(60 if mode == "jit" else 20):
        n = int(rng.integers(0, 40))
        values = int_values(rng, dtype, n)
        fill = values[rng.integers(0, n)] if n and rng.random() < 0.7 else values.dtype.type(1)
        written = rng.integers(0, 2, n).astype(np.uint8) if rng.random() < 0.5 else NO_MASK
        check_stats_int(mode, values, fill, bool(rng.random() < 0.6), False, written)


@pytest.mark.parametrize("mode", STATS_MODES)
def test_stats_int_uint64_beyond_int64(mode):
    u = np.uint64
    values = np.array([2**64 - 1, 2**63, 2**63 - 1, 2**64 - 2, 7], np.uint64)
    # the fill is 2**64 - 1, passed as uint64 (as chunks.py passes it), not as int64 -1
    assert check_stats_int(mode, values, u(2**64 - 1), True, False, NO_MASK) == (1, 4, 7, 2**64 - 2)
    assert check_stats_int(mode, values, u(2**64 - 1), False, False, NO_MASK) == (0, 5, 7, 2**64 - 1)
    assert check_stats_int(mode, values, u(2**63), True, False, NO_MASK) == (1, 4, 7, 2**64 - 1)
    # values that differ only in the low bits, above 2**53: no float rounding anywhere
    close = np.array([2**64 - 1, 2**64 - 2, 2**64 - 3], np.uint64)
    assert check_stats_int(mode, close, u(2**64 - 2), True, False, NO_MASK) == (1, 2, 2**64 - 3, 2**64 - 1)
    # a uint64 cell with the NaT bit pattern is a plain value (nat applies to timestamps only)
    assert check_stats_int(mode, np.array([2**63], np.uint64), u(0), True, False, NO_MASK) == (0, 1, 2**63, 2**63)


@pytest.mark.parametrize("mode", STATS_MODES)
def test_stats_int_timestamps_and_nat(mode):
    i = np.int64
    values = np.array([NAT, 5, -9_000_000_000_000_000_000, NAT + 1, 2**63 - 1], np.int64)
    # NaT is null when nat is set, a plain (minimal) value when not
    assert check_stats_int(mode, values, i(0), False, True, NO_MASK) == (1, 4, NAT + 1, 2**63 - 1)
    assert check_stats_int(mode, values, i(0), False, False, NO_MASK) == (0, 5, NAT, 2**63 - 1)
    # fill and NaT together, and a fill that is NaT itself
    assert check_stats_int(mode, values, i(5), True, True, NO_MASK) == (2, 3, NAT + 1, 2**63 - 1)
    assert check_stats_int(mode, values, i(NAT), True, True, NO_MASK) == (1, 4, NAT + 1, 2**63 - 1)
    # with a written mask
    mask = np.array([1, 0, 1, 0, 1], np.uint8)
    assert check_stats_int(mode, values, i(0), False, True, mask) == (3, 2, -9_000_000_000_000_000_000, 2**63 - 1)


@pytest.mark.parametrize("mode", STATS_MODES)
@pytest.mark.parametrize("dtype", ["int8", "uint64", "int64", "bool"])
def test_stats_int_all_null(mode, dtype):
    dt = np.dtype("uint8" if dtype == "bool" else dtype)
    values = np.array([1, 1, 1], dt)
    for fill, use_fill, mask in [
        (dt.type(1), True, NO_MASK),  # every cell is the fill
        (dt.type(0), False, np.zeros(3, np.uint8)),  # nothing was written
        (dt.type(1), True, np.array([0, 1, 0], np.uint8)),  # both
    ]:
        nulls, valid, _, _ = check_stats_int(mode, values, fill, use_fill, False, mask)
        assert (nulls, valid) == (3, 0)
    assert check_stats_int(mode, np.zeros(0, dt), dt.type(0), True, False, NO_MASK)[:2] == (0, 0)
    if dtype == "int64":
        nat_only = np.array([NAT, NAT], np.int64)
        assert check_stats_int(mode, nat_only, np.int64(0), False, True, NO_MASK)[:2] == (2, 0)


@pytest.mark.parametrize("mode", STATS_MODES)
@HYP
@given(
    dtype=st.sampled_from(INT_DTYPES),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 30),
    use_fill=st.booleans(),
    nat=st.booleans(),
    masked=st.booleans(),
)
def test_stats_int_property(mode, dtype, seed, n, use_fill, nat, masked):
    rng = np.random.default_rng(seed)
    values = int_values(rng, dtype, n)
    if nat and dtype == "int64" and n:
        values[rng.random(n) < 0.3] = NAT
    nat = nat and dtype == "int64"  # only timestamps (stored as int64) ask for NaT
    fill = values[rng.integers(0, n)] if n else values.dtype.type(0)
    written = rng.integers(0, 2, n).astype(np.uint8) if masked else NO_MASK
    check_stats_int(mode, values, fill, use_fill, nat, written)


# -- the kernels as chunks.py calls them --------------------------------------------------------------


def meta(dtype, fill=None):
    """An ArrayMeta whose fill value went through define_array's normalisation."""
    fill = dtypes.check_fill_value(fill, dtype)
    return ArrayMeta(slot=0, dtype=dtype, dims=("n",), shape=(5,), chunk_shape=(5,), fill_value=fill)


@pytest.fixture(params=["kernel", "numpy"])
def stats_path(request, monkeypatch):
    """chunk_stats on each of its paths (numba kernels for large chunks, numpy for small)."""
    monkeypatch.setattr(chunks, "NUMPY_STATS_MAX_CELLS", 0 if request.param == "kernel" else 1 << 62)


@pytest.mark.usefixtures("stats_path")
def test_chunk_stats_uint64_fill_beyond_int64():
    values = np.array([2**64 - 1, 3, 2**63 + 5, 2**64 - 1, 2**63], np.uint64)
    st_ = chunk_stats(values, None, meta("uint64", 2**64 - 1))
    assert (st_.cells, st_.null_count, st_.minimum, st_.maximum) == (5, 2, 3, 2**63 + 5)
    st_ = chunk_stats(values, None, meta("uint64", 2**63))
    assert (st_.null_count, st_.minimum, st_.maximum) == (1, 3, 2**64 - 1)
    st_ = chunk_stats(values, np.array([1, 0, 1, 0, 0], np.uint8), meta("uint64"))
    assert (st_.null_count, st_.minimum, st_.maximum) == (3, 2**63 + 5, 2**64 - 1)


def test_chunk_stats_passes_the_fill_in_the_dtype_of_the_values(monkeypatch):
    """Numba compares uint64 with int64 through float64, so a fill passed as a wrapped
    int64 bit pattern would silently never match; chunks.py must pass the values' dtype."""
    seen = []
    real = kernels.stats_int

    def spy(values, fill, *rest):
        seen.append((values.dtype, np.asarray(fill).dtype))
        return real(values, fill, *rest)

    monkeypatch.setattr(kernels, "stats_int", spy)
    monkeypatch.setattr(chunks, "NUMPY_STATS_MAX_CELLS", 0)  # the kernel path, whatever the size
    chunk_stats(np.array([2**64 - 1, 1], np.uint64), None, meta("uint64", 2**64 - 1))
    chunk_stats(np.array([True, False]), None, meta("bool", True))
    chunk_stats(np.array([NAT, 1], np.int64), None, meta("timestamp_nanoseconds"))
    chunk_stats(np.array([-1, 1], np.int8), None, meta("int8"))
    assert seen and all(v == f for v, f in seen), seen


@pytest.mark.usefixtures("stats_path")
def test_chunk_stats_int_timestamp_bool_float():
    st_ = chunk_stats(np.array([-128, 127, 0, -1, 5], np.int8), None, meta("int8", -1))
    assert (st_.null_count, st_.minimum, st_.maximum) == (1, -128, 127)
    ts = np.array([NAT, 10, 20, NAT, -5], np.int64)
    st_ = chunk_stats(ts, None, meta("timestamp_nanoseconds"))
    assert (st_.null_count, st_.minimum, st_.maximum) == (2, -5, 20)
    st_ = chunk_stats(ts, None, meta("timestamp_nanoseconds", 20))
    assert (st_.null_count, st_.minimum, st_.maximum) == (3, -5, 10)
    b = np.array([True, False, True, True, False])
    st_ = chunk_stats(b, np.array([1, 1, 0, 0, 0], np.uint8), meta("bool"))
    assert (st_.null_count, st_.minimum, st_.maximum) == (3, False, True)
    st_ = chunk_stats(b, None, meta("bool", True))
    assert (st_.null_count, st_.minimum, st_.maximum) == (3, False, False)
    f32 = np.array([0.1, np.nan, 0.5, 0.1, -2.0], np.float32)
    st_ = chunk_stats(f32, None, meta("float32", 0.1))  # the stored fill is float32-rounded
    assert (st_.null_count, st_.minimum, st_.maximum) == (3, -2.0, 0.5)
    st_ = chunk_stats(np.full(5, np.nan, np.float64), None, meta("float64"))
    assert (st_.null_count, st_.minimum, st_.maximum) == (5, None, None)


# -- xxh64 --------------------------------------------------------------------------------------------


def test_xxh64_known_vectors():
    assert int(kernels.xxh64(np.zeros(0, np.uint8))) == 0xEF46DB3751D8E999
    abc = np.frombuffer(b"abc", np.uint8)
    assert int(kernels.xxh64(abc)) == xxhash.xxh64_intdigest(b"abc") == 0x44BC2CF5AD770999


@pytest.mark.parametrize("n", range(0, 101))
def test_xxh64_every_short_length(n):
    rng = np.random.default_rng(n)
    data = rng.integers(0, 256, n, dtype=np.uint8)
    assert int(kernels.xxh64(data)) == xxhash.xxh64_intdigest(data.tobytes())
    ones = np.full(n, 0xFF, np.uint8)  # every byte's high bit set: no sign extension anywhere
    assert int(kernels.xxh64(ones)) == xxhash.xxh64_intdigest(ones.tobytes())


@pytest.mark.parametrize("n", [127, 128, 129, 1000, 4096 + 3, 65536, (1 << 20) + 7])
def test_xxh64_large(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    assert int(kernels.xxh64(data)) == xxhash.xxh64_intdigest(data.tobytes())


def test_xxh64_of_views_and_read_only_buffers():
    """Chunks are hashed as slices of a read-only memory map, at any offset."""
    base = np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8)
    ro = base.copy()
    ro.flags.writeable = False
    for offset in [0, 1, 3, 7, 64]:
        for n in [0, 5, 31, 32, 33, 200]:
            want = xxhash.xxh64_intdigest(base[offset : offset + n].tobytes())
            assert int(kernels.xxh64(base[offset : offset + n])) == want
            assert int(kernels.xxh64(ro[offset : offset + n])) == want
    frozen = np.frombuffer(bytes(base), np.uint8)  # read-only, like np.frombuffer over a map
    assert int(kernels.xxh64(frozen)) == xxhash.xxh64_intdigest(bytes(base))


@HYP
@given(data=st.binary(min_size=0, max_size=300))
def test_xxh64_property(data):
    assert int(kernels.xxh64(np.frombuffer(data, np.uint8))) == xxhash.xxh64_intdigest(data)


@pytest.mark.parametrize("mode", MODES)
def test_xxh64_many(mode):
    rng = np.random.default_rng(17)
    src = rng.integers(0, 256, 5000, dtype=np.uint8)
    src.flags.writeable = False  # a memory map is read-only
    nbytes = np.array([0, 1, 7, 31, 32, 33, 64, 100, 1000, 4000], np.int64)
    offsets = np.array([int(rng.integers(0, src.size - n + 1)) for n in nbytes], np.int64)
    out = np.zeros(nbytes.size, np.uint64)
    fn = kernels.xxh64_many if mode == "jit" else kernels.xxh64_many.py_func
    fn(src, offsets, nbytes, out)
    want = [xxhash.xxh64_intdigest(src[o : o + n].tobytes()) for o, n in zip(offsets, nbytes, strict=True)]
    assert [int(v) for v in out] == want
    empty = np.zeros(0, np.uint64)
    fn(src, np.zeros(0, np.int64), np.zeros(0, np.int64), empty)  # no pieces: nothing to do


@pytest.mark.parametrize("mode", MODES)
def test_copy_box_at_with_a_source_that_starts_before_its_buffer(mode):
    """An item-range decode holds only items ``first..`` of a chunk: the copy is
    addressed with base ``-first`` and must touch only what it holds."""
    chunk = np.arange(7 * 11 * 5, dtype="int32").reshape(7, 11, 5)
    start, box = vec([2, 3, 1]), vec([3, 4, 2])
    first = int(np.ravel_multi_index((2, 3, 1), chunk.shape))
    last = int(np.ravel_multi_index((4, 6, 2), chunk.shape))
    held = chunk.reshape(-1)[first : last + 1].copy()
    out = np.zeros((2, 3, 4, 2), "int32")
    kernel("copy_box_at", mode)(
        held, -first, vec(chunk.shape), start, box, vec([3, 4, 2]), vec([0, 0, 0]), flat(out), 24
    )
    np.testing.assert_array_equal(out[1], chunk[2:5, 3:7, 1:3])
    assert not out[0].any()
