"""The catalogue: format v2 metadata for stores of very many datasets.

A v2 store's commit object (:class:`CommitObject`, the ``atlas.json`` /
``atlas.msgpack`` file) lists immutable catalogue parts (:class:`PartRef`); each
part holds, in columns, the datasets one commit created, changed or deleted.
:class:`Catalog` reads a snapshot lazily; :func:`write_part`, :func:`merge_parts`,
:func:`choose_merge` and :func:`catalog_from_manifest` write parts.  Bytes are read
through one callable, ``read_range(path, offset, length) -> bytes``, so any backend
can serve them.  ``docs/format-v2.md`` is the normative description.
"""

from __future__ import annotations

from atlas.catalog.build import BLOCK_ROWS, write_part
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
from atlas.catalog.snapshot import STATS_FIELDS, Catalog

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
