"""The catalogue: format v2 metadata for stores of very many datasets.

A v2 store's commit object (:class:`CommitObject`, the ``atlas.json`` /
``atlas.msgpack`` file) lists immutable catalogue parts (:class:`PartRef`); each
part holds, in columns, the datasets one commit created, changed or deleted.
``docs/format-v2.md`` is the normative description.

Reading::

    meta = decode_metadata(data, meta_format, compression, where)  # Manifest (v1) or CommitObject
    cat = Catalog(meta.parts, read_range)    # reads nothing yet
    cat.names(); "x" in cat; cat.get("x")    # -> DatasetMeta
    cat.column("platform"); cat.stats_column("temp", "max"); cat.live_slots("temp")

Writing (a commit)::

    file, buffers, ref = write_part([(name, meta_or_None), ...], codec, generation, token)
    backend.put(ref.path, buffers)           # durable before the commit object names it
    parts = [*old.parts, ref]
    start = choose_merge([p.rows for p in parts])
    if start is not None:                    # merge the newest run into one part
        _, merged_buffers, merged = merge_parts(parts[start:], read_range, codec, generation, token,
                                                drop_tombstones=start == 0)
        backend.put(merged.path, merged_buffers)
        parts = [*parts[:start], merged]     # the replaced parts go to ``retired``
    data = encode_commit(CommitObject(..., parts=parts), meta_format, compression)

Modules: ``commit`` (the commit object), ``build`` and ``layout`` (writing a
part), ``part`` (reading one), ``snapshot`` (:class:`Catalog`), ``columns`` (its
search columns), ``winners`` (which row of which part is live, and where it goes in
name order), ``schemas`` (interned array schemas for bulk reads), ``merge`` and
``merging`` (the merge policy and merges), ``encoding`` (records and strings).

Bytes are read through one callable, ``read_range(path, offset, length) -> bytes``
(store-relative paths), so a memory map or object-store range reads can serve it,
e.g. ``lambda p, o, n: backend.get_ranges(p, [o], [n])[0]``.  Every byte read is
hostile: damage raises :class:`~atlas.errors.CorruptStoreError` naming the part.
"""

from __future__ import annotations

from atlas.catalog.build import BLOCK_ROWS, write_part
from atlas.catalog.columns import STATS_FIELDS
from atlas.catalog.commit import (
    CATALOG_DIR,
    FORMAT_VERSION_V2,
    CommitObject,
    PartRef,
    decode_commit,
    decode_metadata,
    encode_commit,
    part_filename,
)
from atlas.catalog.encoding import INTERNAL_PREFIX, is_internal_key
from atlas.catalog.merge import MAX_PARTS, MERGE_RATIO, catalog_from_manifest, choose_merge, merge_parts
from atlas.catalog.part import ReadRange
from atlas.catalog.snapshot import Catalog

__all__ = [
    "BLOCK_ROWS",
    "CATALOG_DIR",
    "FORMAT_VERSION_V2",
    "INTERNAL_PREFIX",
    "MAX_PARTS",
    "MERGE_RATIO",
    "STATS_FIELDS",
    "Catalog",
    "CommitObject",
    "PartRef",
    "ReadRange",
    "catalog_from_manifest",
    "choose_merge",
    "decode_commit",
    "decode_metadata",
    "encode_commit",
    "is_internal_key",
    "merge_parts",
    "part_filename",
    "write_part",
]
