"""Round trips: what is written reads back the same, pending, flushed and reopened.

Every dtype, rank 0..3 (zero extents included), default and odd chunkings, fill
values or none, every accepted input form, every chunk codec and manifest format.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import atlas

from . import strategies as S
from .reference import ArrayModel, ArraySpec, assert_cells_equal, define, fill_scalar, scalars_equal

Selection = tuple[tuple[int, ...], tuple[int, ...]]


def _scribble(arr: np.ndarray) -> None:
    """Overwrite every cell of ``arr`` in place (the store must hold no reference to it)."""
    if not arr.flags.writeable or arr.size == 0:
        return
    kind = arr.dtype.kind
    if kind == "O":
        arr[...] = "scribbled"
    elif kind in "US":
        arr[...] = "z"
    elif kind == "b":
        arr[...] = ~arr
    elif kind == "M":
        arr.view("i8")[...] = 12345
    else:
        arr[...] = arr.dtype.type(7) if kind != "f" else -1.5


def _check_reads(ds: atlas.DatasetView, name: str, model: ArrayModel, reads: list[Selection], when: str) -> None:
    full = ds.read_array(name)
    assert_cells_equal(full, model.values, model.dtype, f"{when}: full read of {name!r}")
    _scribble(full)
    assert_cells_equal(ds.read_array(name), model.values, model.dtype, f"{when}: read after scribbling a result")
    for start, shape in reads:
        got = ds.read_array(name, list(start), list(shape))
        assert_cells_equal(got, model.read(start, shape), model.dtype, f"{when}: read {name!r} at {start} {shape}")
        to_end = tuple(s - b for s, b in zip(model.shape, start))
        got = ds.read_array(name, list(start))
        assert_cells_equal(got, model.read(start, to_end), model.dtype, f"{when}: read {name!r} from {start}")


def _check_meta(ds: atlas.DatasetView, name: str, spec: ArraySpec, model: ArrayModel) -> None:
    meta = ds.array_meta(name)
    assert meta["dtype"] == spec.dtype
    assert meta["shape"] == list(spec.shape)
    assert meta["dimension_names"] == list(model.dims)
    assert len(meta["chunk_shape"]) == len(spec.shape)
    assert all(c >= 1 for c in meta["chunk_shape"])
    if spec.chunk_shape is not None:
        assert meta["chunk_shape"] == list(spec.chunk_shape)
    if spec.fill_value is None:
        assert meta["fill_value"] is None
        assert ds.array_fill_value(name) is None
    else:
        expected = fill_scalar(spec.dtype, spec.fill_value)
        assert scalars_equal(meta["fill_value"], expected), f"fill {meta['fill_value']!r} != {expected!r}"
        assert scalars_equal(ds.array_fill_value(name), expected)


@given(
    spec=S.array_specs(),
    opts=S.store_options(),
    dataset=S.dataset_names(),
    array=S.array_names(),
    data=st.data(),
)
def test_write_read_roundtrip(
    spec: ArraySpec, opts: S.StoreOptions, dataset: str, array: str, data: st.DataObject
) -> None:
    """Overlapping writes before and after a flush read back like a numpy model."""
    first = data.draw(st.lists(S.writes(spec), min_size=1, max_size=3), label="writes before flush")
    second = data.draw(st.lists(S.writes(spec), max_size=2), label="writes after flush")
    reads = data.draw(st.lists(S.selections(spec.shape), min_size=1, max_size=3), label="reads")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.atlas"
        store = atlas.Atlas.create(path, **opts.kwargs())
        ds = store.create_dataset(dataset)
        model = define(ds, array, spec)
        _check_reads(ds, array, model, reads, "unwritten")
        for start, values in first:
            ds.write_array(array, list(start), values)
            model.write(start, values)
            _scribble(values)
        _check_reads(ds, array, model, reads, "pending")
        store.flush()
        _check_reads(ds, array, model, reads, "flushed")
        for start, values in second:
            ds.write_array(array, list(start), values)
            model.write(start, values)
            _scribble(values)
        _check_reads(ds, array, model, reads, "pending over flushed")
        store.close()

        reopened = atlas.Atlas.open(path, mode="r")
        try:
            assert reopened.list_datasets() == [dataset]
            assert reopened.list_arrays() == [array]
            ds = reopened.open_dataset(dataset)
            assert ds.list_arrays() == [array]
            _check_meta(ds, array, spec, model)
            _check_reads(ds, array, model, reads, "reopened")
            got = ds.read_arrays([array, "missing"], [0] * len(spec.shape), list(spec.shape))
            assert got["missing"] is None
            assert_cells_equal(got[array], model.values, spec.dtype, "read_arrays")
        finally:
            reopened.close()


@given(
    specs=st.lists(S.array_specs(max_side=4), min_size=2, max_size=3),
    opts=S.store_options(),
    names=st.lists(S.dataset_names(), min_size=3, max_size=3, unique=True),
    array=S.array_names(),
    data=st.data(),
)
def test_same_array_name_in_several_datasets(
    specs: list[ArraySpec], opts: S.StoreOptions, names: list[str], array: str, data: st.DataObject
) -> None:
    """Datasets share one file family per array name; their cells must never mix."""
    datasets = names[: len(specs)]
    writes = data.draw(
        st.lists(
            st.integers(0, len(specs) - 1).flatmap(lambda i: st.tuples(st.just(i), S.writes(specs[i]))),
            max_size=6,
        ),
        label="interleaved writes",
    )
    flush_after = data.draw(st.sets(st.integers(0, max(len(writes) - 1, 0))), label="flush after write #")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.atlas"
        store = atlas.Atlas.create(path, **opts.kwargs())
        views = [store.create_dataset(n) for n in datasets]
        models = [define(v, array, spec) for v, spec in zip(views, specs)]
        for k, (i, (start, values)) in enumerate(writes):
            views[i].write_array(array, list(start), values)
            models[i].write(start, values)
            if k in flush_after:
                store.flush()
            for view, model in zip(views, models):
                _check_reads(view, array, model, [], f"after write #{k}")
        store.close()

        reopened = atlas.Atlas.open(path, mode="r")
        try:
            assert reopened.list_datasets() == sorted(datasets)
            assert reopened.list_arrays() == [array]
            for name, spec, model in zip(datasets, specs, models):
                view = reopened.open_dataset(name)
                _check_meta(view, array, spec, model)
                _check_reads(view, array, model, [], f"reopened {name!r}")
        finally:
            reopened.close()


def _accepted(call: Callable[[], object]) -> bool:
    """True if ``call`` succeeds, False if it raises an AtlasError (anything else propagates)."""
    try:
        call()
    except atlas.AtlasError:
        return False
    return True


@given(
    opts=S.store_options(),
    dataset=S.any_texts(),
    array=S.any_texts(),
    dim=S.any_texts(),
    key=S.any_texts(),
    value=S.any_texts(),
    fill=S.any_texts(),
)
def test_metadata_text_round_trips_or_is_rejected(
    opts: S.StoreOptions, dataset: str, array: str, dim: str, key: str, value: str, fill: str
) -> None:
    """Any str given as a name, dimension, attribute key or value, or fill value is either
    rejected at once with an AtlasError, or it is stored by the next flush and reads back
    unchanged.  Valid dataset and array names are always accepted."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.atlas"
        store = atlas.Atlas.create(path, **opts.kwargs())
        base = store.create_dataset("base")
        dataset_ok = _accepted(lambda: store.create_dataset(dataset))
        if S.is_valid_name(dataset) and dataset != "base":
            assert dataset_ok, f"valid dataset name {dataset!r} was rejected"
        attribute_ok = _accepted(lambda: base.set_attribute(key, value))
        array_ok = _accepted(lambda: base.define_array(array, "string", [dim], [2], fill_value=fill))
        if S.is_valid_name(array) and S.fits_dir_name(array) and dim and S.encodable(dim) and S.encodable(fill):
            assert array_ok, f"valid array {array!r} (dim {dim!r}, fill {fill!r}) was rejected"
        if key and S.encodable(key) and S.encodable(value):
            assert attribute_ok, f"valid attribute {key!r}={value!r} was rejected"
        store.flush()  # whatever was accepted must be storable
        store.close()

        reopened = atlas.Atlas.open(path, mode="r")
        try:
            expected = sorted({"base", dataset} if dataset_ok else {"base"})
            assert reopened.list_datasets() == expected
            view = reopened.open_dataset("base")
            assert view.attributes() == ({key: value} if attribute_ok else {})
            if array_ok:
                assert view.list_arrays() == [array]
                meta = view.array_meta(array)
                assert meta["dimension_names"] == [dim] and meta["fill_value"] == fill
                assert view.read_array(array).tolist() == [fill, fill]
            else:
                assert view.list_arrays() == []
        finally:
            reopened.close()
