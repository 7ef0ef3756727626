"""Write the golden ATLAS store of format version 2 next to this script.

Run it from the repository root with the project's interpreter::

    PYTHONPATH=. .venv/bin/python tests/data/golden/make_golden_v2.py

``v2-json-zstd/`` starts as a copy of the format 1 store ``v1-json-zstd/`` (written
by ``make_golden.py`` with the format 1 writer), then:

* generation 3 upgrades it (``Atlas.upgrade``): one part holding every dataset;
* generation 4 creates dataset ``late`` (attribute ``k = 7``) and deletes
  ``empty``: its part (one row and one tombstone) is merged at once with the
  upgrade part (the merge policy, ``docs/format-v2.md`` §6.3), tombstone dropped,
  and the upgrade part is retired (it stays on disk, listed in ``retired``).

Write tokens are a hash of the store name and a counter and the clock is fixed,
so a rerun with an unchanged writer and blosc2 reproduces the same bytes.
``tests/test_golden.py`` pins the result.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent

import atlas  # noqa: E402
import atlas.txn.commit  # noqa: E402
from atlas.backends.local import LOCK_NAME  # noqa: E402

#: The fixed clock of the generator (retired times of merged parts).
NOW = 1_800_000_000.0


def main() -> None:
    path = HERE / "v2-json-zstd"
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(HERE / "v1-json-zstd", path)
    counter = itertools.count(1)

    def token_bytes(n: int = 32) -> bytes:
        return hashlib.blake2b(f"v2-json-zstd:{next(counter)}".encode(), digest_size=n).digest()

    atlas.txn.commit.secrets = types.SimpleNamespace(token_bytes=token_bytes)  # type: ignore[attr-defined]
    atlas.txn.commit.time = types.SimpleNamespace(time=lambda: NOW)  # type: ignore[attr-defined]
    with atlas.Atlas.open(path) as s:
        assert s.upgrade()
        s.create_dataset("late").set_attribute("k", 7)
        s.delete_dataset("empty")
    (path / LOCK_NAME).unlink(missing_ok=True)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    print(f"{path.name}: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes")


if __name__ == "__main__":
    main()
