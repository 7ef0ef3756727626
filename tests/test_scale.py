"""Scale and memory: many datasets stay correct and linear, big streamed writes stay bounded.

Timings are left to ``benchmarks/bench_scale.py`` and ``benchmarks/bench_memory.py``
(a shared machine makes timed assertions flaky).  Here linearity is asserted by
counting: the number of Python function calls that open, list and bulk-read a store
make grows in proportion to the number of datasets, and the number of segment reads
of a bulk read does not grow with it at all.  Memory is measured as the peak RSS of
a fresh writer process.
"""

from __future__ import annotations

import cProfile
import importlib.util
import pstats
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import atlas
from atlas.engine.segment_io import SegmentIO

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"atlas_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


scale = _load("bench_scale")
memory = _load("bench_memory")


def _check_store(path: Path, n: int) -> None:
    """Open, list and bulk-read a store built by ``bench_scale.build_store``."""
    with atlas.Atlas.open(path, "r") as store:
        assert len(store) == n
        names = store.list_datasets()
        assert names == [scale.dataset_name(i) for i in range(n)]
        block = store.read_array_across_stacked(scale.ARRAY, names)
        assert block.shape == (n, scale.CELLS) and block.dtype == np.float32
        np.testing.assert_array_equal(block, scale.expected_block(n))
        for i in (0, n // 2, n - 1):
            ds = store.open_dataset(names[i])
            assert ds.get_attribute("station_id") == i
            assert ds.get_attribute("site") == f"site-{i % 97}"
            np.testing.assert_array_equal(ds.read_array(scale.ARRAY), scale.dataset_values(i))
        pick = names[::997]
        parts = store.read_array_across(scale.ARRAY, pick, [3], [5])
        np.testing.assert_array_equal(np.stack(parts), block[::997, 3:8])


def _calls(fn) -> int:
    prof = cProfile.Profile()
    prof.runcall(fn)
    return pstats.Stats(prof).total_calls


def _read_path_calls(path: Path) -> tuple[int, int]:
    """Python calls of open + list + bulk read, and segment reads of the bulk read."""
    reads = 0
    real_read = SegmentIO.read

    def counting_read(self, *args, **kwargs):
        nonlocal reads
        reads += 1
        return real_read(self, *args, **kwargs)

    def work() -> None:
        with atlas.Atlas.open(path, "r") as store:
            store.read_array_across_stacked(scale.ARRAY, store.list_datasets())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SegmentIO, "read", counting_read)
        calls = _calls(work)
    return calls, reads


def test_twenty_thousand_datasets(tmp_path):
    n = 20_000
    scale.build_store(tmp_path / "s", n, flush_every=n)
    _check_store(tmp_path / "s", n)


def test_read_path_work_is_linear_in_datasets(tmp_path):
    sizes = (1_000, 4_000, 10_000)
    for n in sizes:
        # Same batch count for all, so every store has the same number of segments.
        scale.build_store(tmp_path / str(n), n, flush_every=n // 4)
    for n in sizes:  # compile and import everything first (some kernels only above a size)
        _read_path_calls(tmp_path / str(n))
    # the fewest calls of two runs: a one-off (a lazy import, a cache filled) is not per dataset
    counted = [min(_read_path_calls(tmp_path / str(n)) for _ in range(2)) for n in sizes]
    calls = [c for c, _ in counted]
    print(f"calls {calls}, segment reads {[r for _, r in counted]}")
    # Calls = fixed + per-dataset * N: the per-dataset slope from 4 000 to 10 000 is
    # the slope from 1 000 to 4 000 (a super-linear step, a sort in Python or a
    # lookup per pair, would steepen it; the margin absorbs fixed costs that differ
    # by a few hundred calls between runs), and it is small.
    low = (calls[1] - calls[0]) / (sizes[1] - sizes[0])
    high = (calls[2] - calls[1]) / (sizes[2] - sizes[1])
    assert 0 < high <= 1.25 * low + 0.05, (calls, low, high)
    assert high <= 10, f"{high:.1f} Python calls per dataset"
    # One index read and one payload map per segment, whatever the number of datasets.
    reads = {r for _, r in counted}
    assert len(reads) == 1 and reads.pop() <= 2 * 4 + 2, counted


def _assert_bounded(
    size_mib: int, budget_mib: int, slab_mib: int, codec: str, tmp: Path, *, dwarfs: bool = True
) -> dict:
    r = memory.measure(tmp, size_mib, budget_mib, slab_mib, codec, read=True)
    if dwarfs:
        # The array must dwarf the allowance, or an unbounded writer could pass.
        assert r["size_bytes"] >= 2 * (r["ceiling"] - r["baseline"])
    assert r["vm_hwm"] <= r["ceiling"], (
        f"writer peak RSS {r['vm_hwm'] >> 20} MiB over the ceiling {r['ceiling'] >> 20} MiB "
        f"(baseline {r['baseline'] >> 20} MiB, array {r['size_bytes'] >> 20} MiB)"
    )
    assert r["read"]["verified"]
    return r


def test_streaming_write_memory_is_bounded(tmp_path):
    # Raw chunks: the worst case (the spilled segment is as large as the staged data).
    _assert_bounded(256, 32, 8, "none", tmp_path)


@pytest.mark.slow
def test_hundred_thousand_datasets(tmp_path):
    n = 100_000
    scale.build_store(tmp_path / "s", n, flush_every=10_000)
    _check_store(tmp_path / "s", n)


@pytest.mark.slow
def test_streaming_write_of_four_gib_is_bounded(tmp_path):
    small = _assert_bounded(512, 256, 64, "zstd", tmp_path, dwarfs=False)
    big = _assert_bounded(4096, 256, 64, "zstd", tmp_path)
    # The peak does not follow the array size (8x larger, well under 8x the growth).
    assert big["vm_hwm"] - big["baseline"] <= 1.25 * (small["vm_hwm"] - small["baseline"]) + (64 << 20)
