"""Format 1 stores for tests: a library-made store given a v1 manifest with the same content.

The library writes format 2; tests that forge v1 manifest fields (or check the v1
reading path) turn a store into format 1 with :func:`to_v1`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import atlas
from atlas.catalog import CATALOG_DIR
from atlas.metadata import Manifest, encode_manifest, parse_manifest_filename


def to_v1(path: Path) -> Path:
    """Replace the commit object of the store at ``path`` by a v1 manifest (same name, same datasets)."""
    with atlas.Atlas.open(path, mode="r") as s:
        state = s.session.state()
        base = state.base
        manifest = Manifest(
            codec=base.codec, generation=base.generation, write_token=base.write_token, next_slot=base.next_slot,
            next_dataset_id=base.next_dataset_id, datasets=dict(state.snapshot.items()), families=base.families,
            retired=[r for r in base.retired if r.dir != CATALOG_DIR],
        )  # fmt: skip
        name = state.manifest_name
    fmt, comp = parse_manifest_filename(name)  # type: ignore[misc]
    (Path(path) / name).write_bytes(encode_manifest(manifest, fmt, comp))
    shutil.rmtree(Path(path) / CATALOG_DIR, ignore_errors=True)
    return Path(path)
