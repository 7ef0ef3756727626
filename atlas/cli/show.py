"""``atlas show STORE NAME``: one dataset's header, in the style of ``ncdump -h``.

Variables, their attributes and the global attributes are read through the xarray
layout (:func:`atlas.xarray.layout.read_layout`), so a dataset written from a
NetCDF file shows its original variable names and attributes, not the reserved
``_atlas_xarray`` keys; ``--raw`` (or a missing xarray) shows the plain ATLAS view:
every array a variable, ``{array}.{attr}`` keys as its attributes, every other key
global.  Each variable also gets the ATLAS facts as comments: chunk shape, fill
value, coordinate or not, the kept NetCDF encoding, and the stored statistics
(``// stats: count= nulls= min= max=``).
"""

from __future__ import annotations

from typing import Any

from atlas.cli.common import open_store
from atlas.cli.fmt import cdl_value, dump_json, plain_value
from atlas.cli.inspect import RESERVED_PREFIX

__all__ = ["cmd_show", "describe"]


def _owner(key: str, arrays: Any) -> tuple[str, str] | None:
    """``(array, attr)`` of a ``{array}.{attr}`` key (the longest array-name prefix wins)."""
    best = None
    pos = key.find(".")
    while pos > 0:
        if key[:pos] in arrays:
            best = (key[:pos], key[pos + 1 :])
        pos = key.find(".", pos + 1)
    return best


def _plain_layout(view: Any, raw: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    arrays = view.list_arrays()
    variables = {a: {"name": a, "array": a, "coordinate": None, "attributes": {}, "encoding": {}} for a in arrays}
    gattrs: dict[str, Any] = {}
    for key, value in view.attributes().items():
        if key.startswith(RESERVED_PREFIX) and not raw:
            continue
        owner = _owner(key, variables)
        if owner is None:
            gattrs[key] = value
        else:
            variables[owner[0]]["attributes"][owner[1]] = value
    return gattrs, list(variables.values())


def _xarray_layout(view: Any) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    try:
        from atlas.xarray.layout import read_layout
    except ImportError:
        return None
    gattrs, specs = read_layout(view)
    variables = [
        {
            "name": s.name,
            "array": s.array,
            "coordinate": bool(s.is_coord),
            "attributes": dict(s.attrs),
            "encoding": dict(s.encoding),
            "packed": bool(s.packed),
        }
        for s in specs
    ]
    return gattrs, variables


def describe(store: Any, name: str, raw: bool = False) -> dict[str, Any]:
    """The header of dataset ``name`` as plain data (what ``show --json`` prints)."""
    view = store.open_dataset(name)
    layout = None if raw else _xarray_layout(view)
    gattrs, variables = layout if layout is not None else _plain_layout(view, raw)
    dims: dict[str, int] = {}
    conflicts: dict[str, list[int]] = {}
    for k, var in enumerate(variables):
        meta = view.array_meta(var["array"])
        stats = view.array_stats(var["array"])
        var = variables[k] = {
            "name": var["name"],
            "array": var["array"],
            "dtype": meta["dtype"],
            "dims": list(meta["dimension_names"]),
            "shape": list(meta["shape"]),
            "chunk_shape": list(meta["chunk_shape"]),
            "fill_value": meta["fill_value"],
            "coordinate": var["coordinate"],
            "stats": {"count": stats["row_count"], "nulls": stats["null_count"], "min": stats["min"],
                      "max": stats["max"]},
            "attributes": var["attributes"],
            "encoding": var["encoding"],
            "packed": bool(var.get("packed")),  # CF-packed values, decoded on read like xarray does
        }  # fmt: skip
        for dim, size in zip(var["dims"], var["shape"]):
            if dim not in dims:
                dims[dim] = size
            elif dims[dim] != size and size not in conflicts.setdefault(dim, []):
                conflicts[dim].append(size)
    out = {"name": name, "dimensions": dims, "variables": variables, "attributes": gattrs}
    if conflicts:
        out["dimension_conflicts"] = conflicts
    return out


def _render(d: dict[str, Any]) -> list[str]:
    lines = [f"dataset {d['name']} {{"]
    if d["dimensions"]:
        lines.append("dimensions:")
        for dim, size in d["dimensions"].items():
            other = d.get("dimension_conflicts", {}).get(dim)
            note = f" // also {', '.join(map(str, other))} in some arrays" if other else ""
            lines.append(f"\t{dim} = {size} ;{note}")
    if d["variables"]:
        lines.append("variables:")
    for var in d["variables"]:
        dims = f"({', '.join(var['dims'])})" if var["dims"] else ""
        lines.append(f"\t{var['dtype']} {var['name']}{dims} ;")
        facts = []
        if var["array"] != var["name"]:
            facts.append(f"array {var['array']!r}")
        if var["chunk_shape"]:
            facts.append(f"chunks = {', '.join(map(str, var['chunk_shape']))}")
        if var["fill_value"] is not None:
            facts.append(f"fill_value = {plain_value(var['fill_value'])}")
        if var["coordinate"]:
            facts.append("coordinate")
        if var.get("packed"):
            facts.append("packed: decoded on read (mask and scale)")
        if facts:
            lines.append(f"\t\t// {' ; '.join(facts)}")
        if var["encoding"]:
            enc = " ; ".join(f"{k} = {_enc_value(v)}" for k, v in var["encoding"].items())
            lines.append(f"\t\t// encoding: {enc}")
        s = var["stats"]
        low, high = plain_value(s["min"]), plain_value(s["max"])
        lines.append(f"\t\t// stats: count={s['count']} nulls={s['nulls']} min={low} max={high}")
        for key, value in var["attributes"].items():
            lines.append(f"\t\t{var['name']}:{key} = {cdl_value(value)} ;")
    if d["attributes"]:
        lines.append("")
        lines.append("// global attributes:")
        for key, value in d["attributes"].items():
            lines.append(f"\t\t:{key} = {cdl_value(value)} ;")
    lines.append("}")
    return lines


def _enc_value(value: Any) -> str:
    import numpy as np

    if isinstance(value, np.dtype):
        return str(value)
    return cdl_value(value)


def cmd_show(args: Any) -> int:
    """``atlas show STORE NAME [--json] [--raw]``."""
    with open_store(args) as store:
        d = describe(store, args.name, raw=args.raw)
    if args.json:
        dump_json(d)
    else:
        print("\n".join(_render(d)))
    return 0
