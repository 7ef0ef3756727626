"""Write the golden format 2 store whose part has interned array schemas.

Run it from the repository root with the project's interpreter::

    PYTHONPATH=. .venv/bin/python tests/data/golden/make_golden_v2_schemas.py

``v2-schemas-json-zstd/`` is made like ``v2-json-zstd/`` (``make_golden_v2.py``: a
copy of the format 1 store ``v1-json-zstd/``, upgraded at generation 3, dataset
``late`` created and ``empty`` deleted at generation 4, the two parts merged) by a
writer that interns array schemas (``docs/format-v2.md`` §4.4, stats group flag 4),
so its live part has the ``schema``/``schemas`` columns, built by the merge.
``v2-json-zstd/`` keeps the parts written before that addition.
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
NAME = "v2-schemas-json-zstd"


def main() -> None:
    path = HERE / NAME
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(HERE / "v1-json-zstd", path)
    counter = itertools.count(1)

    def token_bytes(n: int = 32) -> bytes:
        return hashlib.blake2b(f"{NAME}:{next(counter)}".encode(), digest_size=n).digest()

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
