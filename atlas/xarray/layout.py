"""The ATLAS -> xarray mapping: a stored dataset's layout as xarray variables.

:func:`read_layout` reads the ``_atlas_xarray`` attribute layout written by
:func:`atlas.xarray.add_xr_dataset` (or maps a plain ATLAS dataset) into the global
attributes and one :class:`VarSpec` per variable; :func:`restore_block`,
:func:`make_variable` and :func:`build_dataset` turn stored data back into xarray objects.
Shared by :func:`atlas.xarray.to_xarray` and the ``engine="atlas"`` backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from atlas import dtypes
from atlas.errors import FormatVersionError
from atlas.xarray.conversions import (
    K_ARRAYS,
    K_COORDS,
    K_VARS,
    LAYOUT_VERSION,
    PREFIX,
    decode_attr_value,
    restore_array,
    vkey,
)

if TYPE_CHECKING:
    from atlas.dataset import DatasetView

@dataclass
class VarSpec:
    """How one stored array becomes an xarray variable."""

    name: str
    array: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    store_dtype: str
    is_coord: bool
    attrs: dict[str, Any] = field(default_factory=dict)
    encoding: dict[str, Any] = field(default_factory=dict)
    restore: tuple[str | None, str | None] = (None, None)
    #: CF-packed integers (``attrs`` hold ``_FillValue``/``scale_factor``/...): decoded on read like xarray does.
    packed: bool = False

    @property
    def dtype(self) -> np.dtype:
        if self.restore[0]:
            return np.dtype(self.restore[0])
        return dtypes.result_dtype(self.store_dtype)

    @property
    def single_chunk(self) -> bool:
        return all(c >= s for c, s in zip(self.chunk_shape, self.shape))

    @property
    def is_index(self) -> bool:
        return self.is_coord and len(self.dims) == 1 and self.dims[0] == self.name

    def signature(self) -> tuple:
        return (self.name, self.array, self.dims, self.shape, self.store_dtype, self.is_coord, self.restore)


def _legacy_owner(key: str, arrays: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(array, attr)`` for a legacy ``{array}.{attr}`` key (longest array-name prefix), else None."""
    best = None
    pos = key.find(".")
    while pos > 0:
        if key[:pos] in arrays:
            best = (key[:pos], key[pos + 1 :])
        pos = key.find(".", pos + 1)
    return best


def _decode_attrs(
    attrs: Mapping[str, Any], names: list, keys: list, kinds: list, default_key: Any, used: set[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for j, attr in enumerate(names):
        key = (keys[j] if j < len(keys) else "") or default_key(attr)
        if key not in attrs:
            continue  # deleted through the store API since
        used.add(key)
        out[attr] = decode_attr_value(attrs[key], kinds[j] if j < len(kinds) else "")
    return out


def read_layout(view: DatasetView) -> tuple[dict[str, Any], list[VarSpec]]:
    """The global attrs and variable specs of a stored dataset.

    Datasets written by :func:`add_xr_dataset` are read through their
    ``_atlas_xarray`` layout; any other dataset (written with the array API or by the
    original ATLAS) maps every array to a variable and ``{array}.{attr}`` keys to
    variable attributes.
    """
    attrs = view.attributes()
    metas = {a: view.array_meta(a) for a in view.list_arrays()}
    used: set[str] = set()
    specs: list[VarSpec] = []
    gattrs: dict[str, Any] = {}
    version = attrs.get(PREFIX)
    if version is not None:
        if not isinstance(version, int) or version > LAYOUT_VERSION:
            raise FormatVersionError(
                f"dataset {view.name!r} uses xarray layout {version!r}; this atlas reads up to {LAYOUT_VERSION}"
            )
        used.add(PREFIX)
        names = list(attrs.get(K_VARS, []))
        arrays = list(attrs.get(K_ARRAYS, names))
        coords = list(attrs.get(K_COORDS, [False] * len(names)))
        gattrs = _decode_attrs(
            attrs,
            list(attrs.get(f"{PREFIX}/attrs", [])),
            list(attrs.get(f"{PREFIX}/attr_keys", [])),
            list(attrs.get(f"{PREFIX}/attr_kinds", [])),
            lambda k: k,
            used,
        )
        for i, (name, array) in enumerate(zip(names, arrays)):
            meta = metas.get(array)
            if meta is None:
                continue  # deleted through the array API since
            spec = _spec(name, array, meta, bool(coords[i]) if i < len(coords) else False)
            spec.attrs = _decode_attrs(
                attrs,
                list(attrs.get(vkey(i, "attrs"), [])),
                list(attrs.get(vkey(i, "attr_keys"), [])),
                list(attrs.get(vkey(i, "attr_kinds"), [])),
                lambda k, a=array: f"{a}.{k}",
                used,
            )
            enc_names = list(attrs.get(vkey(i, "encoding"), []))
            enc_kinds = list(attrs.get(vkey(i, "encoding_kinds"), []))
            for j, key in enumerate(enc_names):
                raw = attrs.get(vkey(i, f"e/{j}"))
                kind = enc_kinds[j] if j < len(enc_kinds) else ""
                spec.encoding[key] = np.dtype(raw) if kind == "npdtype" else decode_attr_value(raw, kind)
            spec.restore = (attrs.get(vkey(i, "dtype")) or None, attrs.get(vkey(i, "text")) or None)
            spec.packed = attrs.get(vkey(i, "cf")) == "mask_and_scale"
            specs.append(spec)
    listed = {s.array for s in specs}
    by_array = {s.array: s for s in specs}
    for array, meta in metas.items():
        if array not in listed:
            spec = _spec(array, array, meta, False)
            if meta["fill_value"] is not None:
                spec.encoding["_FillValue"] = meta["fill_value"]
            specs.append(spec)
            by_array[array] = spec
    for key, value in attrs.items():
        if key in used or key.startswith(PREFIX):
            continue
        owner = _legacy_owner(key, by_array)
        if owner is None:
            gattrs[key] = value
        else:
            by_array[owner[0]].attrs[owner[1]] = value
    return gattrs, specs


def _spec(name: str, array: str, meta: Mapping[str, Any], is_coord: bool) -> VarSpec:
    dims = tuple(meta["dimension_names"])
    if not is_coord and len(dims) == 1 and dims[0] == name:
        is_coord = True
    return VarSpec(name, array, dims, tuple(meta["shape"]), tuple(meta["chunk_shape"]), meta["dtype"], is_coord)


def restore_block(data: np.ndarray, restore: tuple[str | None, str | None]) -> np.ndarray:
    """Read data of one variable back to its original numpy dtype."""
    return restore_array(data, restore[0] if restore[0] != "|O" else None, restore[1])


def build_dataset(variables: dict[str, Any], coord_names: Sequence[str], attrs: dict[str, Any]) -> Any:
    ds = xr.Dataset(variables, attrs=attrs)
    coords = [c for c in coord_names if c not in ds.coords]
    return ds.set_coords(coords) if coords else ds


def make_variable(spec: VarSpec, data: Any, dims: tuple[str, ...] | None = None) -> Any:
    var = xr.Variable(spec.dims if dims is None else dims, data, attrs=spec.attrs, encoding=dict(spec.encoding))
    if spec.packed:
        # xarray's own mask-and-scale decoding (lazy for dask and backend arrays): the values, dtype
        # and encoding come out exactly as xr.open_dataset gives them for the source file.
        var = xr.conventions.decode_cf_variable(
            spec.name, var, concat_characters=False, mask_and_scale=True, decode_times=False,
            decode_endianness=False, stack_char_dim=False, decode_timedelta=False,
        )  # fmt: skip
    return var
