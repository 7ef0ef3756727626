"""The rows that are not the plain ATLAS API: ATLAS per dataset under dask, N netCDF4
files and N zarr v3 stores through ``xarray.open_mfdataset``, and the codec floor.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import blosc2
import numpy as np
from atlas_api import WARMUP_DATASETS, check
from timing import clock, dir_bytes, log, measure, rmtree, summarize
from workloads import Workload, dataset_name, expected_box, touched_chunks

from atlas.engine.codecs import CLEVEL as ATLAS_CLEVEL

__all__ = ["bench_dask", "bench_floor", "bench_reader", "bench_xarray"]

#: Codec settings of the netCDF4 and zarr rows and of the floor: what ATLAS uses for
#: ``codec="zstd"`` (blosc2 ZSTD at ATLAS's level, byte shuffle, one thread).
CLEVEL = ATLAS_CLEVEL


# -- (b) ATLAS per dataset, one dask.delayed per dataset --------------------------------------


def _read_one(store: object, name: str, variables: list[str], start: list[int], box: list[int]) -> dict:
    return store.open_dataset(name).read_arrays(variables, start, box)


def dask_read(store: object, wl: Workload, names: list[str]) -> dict[str, np.ndarray]:
    import dask

    start, box, variables = list(wl.start), list(wl.box), wl.var_names
    tasks = [dask.delayed(_read_one)(store, n, variables, start, box) for n in names]
    parts = dask.compute(*tasks, scheduler="threads")
    return {v: np.stack([p[v] for p in parts]) for v in variables}


def loop_read(store: object, wl: Workload, names: list[str]) -> dict[str, np.ndarray]:
    """The plain per-dataset API: ``read_array`` of every variable of every dataset, then stacked."""
    start, box = list(wl.start), list(wl.box)
    views = [store.open_dataset(n) for n in names]
    return {v: np.stack([d.read_array(v, start, box) for d in views]) for v in wl.var_names}


def xarray_many_read(store: object, wl: Workload, names: list[str]) -> dict[str, np.ndarray]:
    """``Atlas.to_xarray_many`` (whole arrays of every dataset, stacked), then the box by ``.isel``."""
    ds = store.to_xarray_many(names)
    sel = ds.isel({d: slice(a, a + b) for d, a, b in zip(wl.dims, wl.start, wl.box, strict=True)})
    return {v: np.asarray(sel[v].values) for v in wl.var_names}


READERS = {"dask": dask_read, "loop": loop_read, "xrmany": xarray_many_read}


def bench_dask(atlas: object, path: str, wl: Workload, data: list, n: int, read_repeats: int) -> dict:
    """Read the store of row (a) with the per-dataset API, one dask task per dataset."""
    return bench_reader("dask", atlas, path, wl, data, n, read_repeats)


def bench_reader(kind: str, atlas: object, path: str, wl: Workload, data: list, n: int, read_repeats: int) -> dict:
    """Read the store of row (a) through another read path of the public API (see :data:`READERS`)."""
    reader = READERS[kind]
    want = expected_box(wl, data, n)
    names = [dataset_name(i) for i in range(n)]
    log(f"  [{kind}] {wl.name}-{n}: open+read / read x{read_repeats}")

    opens: list[float] = []
    first_reads: list[float] = []

    def one_cold(r: int) -> float:
        t0 = clock()
        store = atlas.Atlas.open(path)
        t1 = clock()
        got = reader(store, wl, names)
        t2 = clock()
        if r >= 0:
            opens.append(t1 - t0)
            first_reads.append(t2 - t1)
        if r == 0:
            check(got, want, f"{kind} {wl.name}-{n} open+read")
        store.close()
        return t2 - t0

    cold = measure(one_cold, read_repeats)
    store = atlas.Atlas.open(path)
    check(reader(store, wl, names), want, f"{kind} {wl.name}-{n} read")

    def one_read(r: int) -> float:
        t0 = clock()
        reader(store, wl, names)
        return clock() - t0

    read = measure(one_read, read_repeats)
    store.close()
    return {"open_read": cold, "open": summarize(opens), "first_read": summarize(first_reads), "read": read}


# -- (c, d) N netCDF4 files / N zarr v3 stores through xarray ----------------------------------


def _xr_dataset(wl: Workload, arrays: dict[str, np.ndarray]):
    import xarray as xr

    return xr.Dataset({v: (wl.dims, arrays[v]) for v in wl.var_names})


def _encoding(fmt: str, wl: Workload) -> dict:
    if fmt == "netcdf":
        return {
            v.name: {"compression": "zstd", "complevel": CLEVEL, "shuffle": True, "chunksizes": wl.chunks}
            for v in wl.variables
        }
    from zarr.codecs import BloscCodec

    return {
        v.name: {
            "chunks": wl.chunks,
            "compressors": (
                BloscCodec(cname="zstd", clevel=CLEVEL, shuffle="shuffle", typesize=np.dtype(v.dtype).itemsize),
            ),
        }
        for v in wl.variables
    }


def _write_files(fmt: str, root: Path, wl: Workload, data: list, n: int) -> float:
    encoding = _encoding(fmt, wl)
    root.mkdir(parents=True)
    t0 = clock()
    for i in range(n):
        ds = _xr_dataset(wl, data[i])
        if fmt == "netcdf":
            ds.to_netcdf(root / f"{dataset_name(i)}.nc", engine="netcdf4", encoding=encoding)
        else:
            ds.to_zarr(root / f"{dataset_name(i)}.zarr", mode="w", zarr_format=3, consolidated=True, encoding=encoding)
    return clock() - t0


def _open(fmt: str, paths: list[str]):
    import xarray as xr

    if fmt == "netcdf":
        return xr.open_mfdataset(paths, engine="netcdf4", combine="nested", concat_dim="dataset")
    return xr.open_mfdataset(paths, engine="zarr", combine="nested", concat_dim="dataset", consolidated=True)


def _isel_load(ds, wl: Workload) -> dict[str, np.ndarray]:
    sel = {d: slice(s, s + b) for d, s, b in zip(wl.dims, wl.start, wl.box)}
    got = ds.isel(sel).load()
    return {v: got[v].values for v in wl.var_names}


def bench_xarray(fmt: str, wl: Workload, data: list, n: int, tmp: Path, read_repeats: int, write_repeats: int) -> dict:
    """``fmt`` is ``"netcdf"`` (one netCDF4/HDF5 file per dataset) or ``"zarr"`` (one zarr v3
    store per dataset); reads go through ``xr.open_mfdataset(..., combine="nested",
    concat_dim="dataset")`` then ``.isel(first 25%).load()``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        return _bench_xarray(fmt, wl, data, n, tmp, read_repeats, write_repeats)


def _bench_xarray(fmt: str, wl: Workload, data: list, n: int, tmp: Path, read_repeats: int, write_repeats: int) -> dict:
    want = expected_box(wl, data, n)

    def root_of(r: int) -> Path:
        return tmp / f"{fmt}-{wl.name}-{n}-w{r}"

    def one_write(r: int) -> float:
        root = root_of(r)
        rmtree(root)
        secs = _write_files(fmt, root, wl, data, WARMUP_DATASETS if r < 0 else n)
        if r < write_repeats - 1:
            rmtree(root)
        return secs

    log(f"  [{fmt}] {wl.name}-{n}: write x{write_repeats}")
    write = measure(one_write, write_repeats, warmup=1)
    root = root_of(write_repeats - 1)
    nbytes = dir_bytes(root)
    ext = "nc" if fmt == "netcdf" else "zarr"
    paths = [str(root / f"{dataset_name(i)}.{ext}") for i in range(n)]

    log(f"  [{fmt}] {wl.name}-{n}: open+read / read x{read_repeats}")
    opens: list[float] = []
    first_reads: list[float] = []

    def one_cold(r: int) -> float:
        t0 = clock()
        ds = _open(fmt, paths)
        t1 = clock()
        got = _isel_load(ds, wl)
        t2 = clock()
        ds.close()
        if r >= 0:
            opens.append(t1 - t0)
            first_reads.append(t2 - t1)
        if r == 0:
            check(got, want, f"{fmt} {wl.name}-{n} open+read")
        return t2 - t0

    cold = measure(one_cold, read_repeats)
    ds = _open(fmt, paths)
    check(_isel_load(ds, wl), want, f"{fmt} {wl.name}-{n} read")

    def one_read(r: int) -> float:
        t0 = clock()
        _isel_load(ds, wl)
        return clock() - t0

    read = measure(one_read, read_repeats)
    ds.close()
    rmtree(root)
    return {
        "write": write,
        "bytes": nbytes,
        "open": summarize(opens),
        "open_read": cold,
        "first_read": summarize(first_reads),
        "read": read,
    }


# -- (f) the codec floor -------------------------------------------------------------------------


def _xxh64() -> tuple[str, object]:
    """XXH64 of a bytes object: the ``xxhash`` C library, else ATLAS's own jitted kernel."""
    try:
        import xxhash

        return "python-xxhash", xxhash.xxh64_intdigest
    except ImportError:
        from atlas.engine.kernels import xxh64

        return "ATLAS's jitted XXH64; python-xxhash is not installed", lambda b: int(xxh64(np.frombuffer(b, np.uint8)))


def bench_floor(wl: Workload, data: list, n: int, read_repeats: int) -> dict:
    """Decompress exactly the chunks a bulk read touches and copy the selected box out.

    The touched chunks of every dataset and variable are compressed beforehand (not
    timed) with the codec settings of ATLAS (blosc2 ZSTD at ``CLEVEL``, byte shuffle,
    typesize = itemsize); the timing covers only ``blosc2.decompress`` of those
    in-memory payloads plus one numpy copy of the selected part into the
    ``(N, *box)`` output.  Two variants (a new buffer per chunk, or one reused
    destination buffer) are timed and the faster is the floor.

    ATLAS checks the XXH64 of every payload it reads; the floor alone does not.  The
    XXH64 of every payload (``xxhash.xxh64_intdigest``, the C library) is timed on its
    own and added to the floor, returned under ``"verified"``: the work a checking
    reader cannot skip.
    """
    log(f"  [floor] {wl.name}-{n}: compress touched chunks, decompress x{read_repeats}")
    hash_name, xxh64 = _xxh64()
    chunks = touched_chunks(wl)
    box = wl.box
    payloads: dict[str, list[list[tuple[bytes, tuple[int, ...], tuple, tuple]]]] = {}
    raw_bytes = stored_bytes = incompressible = 0
    for var in wl.variables:
        itemsize = np.dtype(var.dtype).itemsize
        per_ds = []
        for i in range(n):
            items = []
            for chunk_sl, src, dst in chunks:
                block = np.ascontiguousarray(data[i][var.name][chunk_sl])
                packed = blosc2.compress2(
                    block,
                    codec=blosc2.Codec.ZSTD,
                    clevel=CLEVEL,
                    filter=blosc2.Filter.SHUFFLE,
                    typesize=itemsize,
                    nthreads=1,
                )
                raw_bytes += block.nbytes
                stored_bytes += len(packed)
                incompressible += len(packed) >= block.nbytes
                items.append((packed, block.shape, src, dst))
            per_ds.append(items)
        payloads[var.name] = per_ds
    largest = max(
        math.prod(shape) * np.dtype(v.dtype).itemsize for v in wl.variables for _, shape, _, _ in payloads[v.name][0]
    )
    scratch = np.empty(largest, dtype=np.uint8)

    def run(reuse: bool) -> dict[str, np.ndarray]:
        out = {}
        for var in wl.variables:
            dtype = np.dtype(var.dtype)
            res = np.empty((n, *box), dtype=dtype)
            for i, items in enumerate(payloads[var.name]):
                dst_i = res[i]
                for packed, shape, src, dst in items:
                    if reuse:
                        nbytes = math.prod(shape) * dtype.itemsize
                        blosc2.decompress(packed, dst=scratch[:nbytes])
                        chunk = scratch[:nbytes].view(dtype).reshape(shape)
                    else:
                        chunk = np.frombuffer(blosc2.decompress(packed), dtype=dtype).reshape(shape)
                    dst_i[dst] = chunk[src]
            out[var.name] = res
        return out

    want = expected_box(wl, data, n)
    digests = {}
    for per_ds in payloads.values():
        for items in per_ds:
            for packed, *_ in items:
                digests[id(packed)] = xxh64(packed)
    best = None
    for reuse in (False, True):
        check(run(reuse), want, f"floor {wl.name}-{n}")

        def one(r: int, reuse: bool = reuse) -> float:
            t0 = clock()
            run(reuse)
            return clock() - t0

        m = measure(one, read_repeats)
        m["variant"] = "decompress into a reused buffer" if reuse else "decompress to a new buffer"
        if best is None or m["median"] < best["median"]:
            best = m
    # The checksums of the same payloads, timed on their own: added to the floor, so the
    # verified floor is never below the plain one whatever the noise between two runs.
    all_payloads = [packed for per_ds in payloads.values() for items in per_ds for packed, *_ in items]

    def one_hash(r: int) -> float:
        t0 = clock()
        for packed in all_payloads:
            if xxh64(packed) != digests[id(packed)]:
                raise AssertionError("floor payload changed")
        return clock() - t0

    hashing = measure(one_hash, read_repeats)
    verified = {
        "median": best["median"] + hashing["median"],
        "min": best["min"] + hashing["min"],
        "max": best["max"] + hashing["max"],
        "variant": best["variant"] + f" + XXH64 of each payload ({hash_name}, median {hashing['median'] * 1e3:.3g} ms)",
        "hash": hashing,
    }
    return {
        "read": best,
        "first_read": best,  # stateless: no handle, nothing to warm up
        "verified": {"read": verified, "first_read": verified},
        "chunks": len(chunks) * n * len(wl.variables),
        "chunk_raw_bytes": raw_bytes,
        "chunk_stored_bytes": stored_bytes,
        "incompressible_chunks": incompressible,
    }
