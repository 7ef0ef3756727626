"""One of several writer processes committing to one store at once (test_concurrency.py).

Writer ``W`` owns the datasets named ``wW-*``; nobody else touches them.  Each step
changes one of them (create, partial write, attribute, delete, re-create), always
records the step number in the ``log`` array of a live dataset (so every commit
carries a change), and commits with the documented retry loop::

    while True:
        try: store.flush(); break
        except ConflictError: store.refresh()

Anything but a ``ConflictError`` from ``flush`` (or any error from ``refresh``, which
must succeed because the datasets are disjoint) ends the process with a traceback.
Writer 0 optionally compacts every few steps (same retry loop).  The writer keeps
its own model of its datasets and writes it, with the generation each successful
commit produced, to ``OUT`` (JSON) at the end.

Usage: ``python conc_writer.py STORE OUT WID STEPS SEED MAX_PENDING COMPACT_EVERY [GO_FLAG]
[--storage-options=JSON]``

``STORE`` is a directory or a URL (``s3://bucket/prefix`` with its obstore options as
JSON, see ``rel_common.options_arg``).  The writers wait for ``GO_FLAG`` (default
``STORE.go``; required for a URL) so that they start together.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from rel_common import pop_options

import atlas
from atlas.errors import ConflictError

V_SHAPE, V_CHUNK = 48, 10
LOG_LEN = 4096


class Writer:
    def __init__(self, path: str, wid: int, seed: int, max_pending: int, options: dict | None = None) -> None:
        kwargs = {"max_pending_bytes": max_pending} if max_pending > 0 else {}
        self.store = atlas.Atlas.open(path, storage_options=options, **kwargs)
        self.wid = wid
        self.rng = np.random.default_rng([seed, wid])
        self.model: dict[str, dict] = {}
        self.generations: list[int] = []
        self.compactions: list[int] = []
        self.conflicts = 0
        self.counter = 0

    def new_dataset(self) -> str:
        name = f"w{self.wid}-d{self.counter}"
        self.counter += 1
        ds = self.store.create_dataset(name)
        ds.define_array("v", "int64", ["n"], [V_SHAPE], chunk_shape=[V_CHUNK])
        ds.define_array("log", "int64", ["step"], [LOG_LEN], chunk_shape=[256], fill_value=-1)
        ds.define_array("s", "string", ["n"], [5], chunk_shape=[2])
        v = self.rng.integers(-(10**9), 10**9, size=V_SHAPE, dtype="int64")
        ds.write_array("v", [0], v)
        self.model[name] = {"v": v, "log": np.full(LOG_LEN, -1, "int64"), "s": [""] * 5, "attrs": {}}
        return name

    def step(self, k: int) -> None:
        names = sorted(self.model)
        op = self.rng.random()
        if not names or (op < 0.15 and len(names) < 4):
            names.append(self.new_dataset())
        elif op < 0.20 and len(names) > 1:
            victim = str(self.rng.choice(names))
            self.store.delete_dataset(victim)
            del self.model[victim]
            names.remove(victim)
        elif op < 0.60:
            name = str(self.rng.choice(names))
            a = int(self.rng.integers(0, V_SHAPE))
            b = int(self.rng.integers(a + 1, V_SHAPE + 1))
            data = self.rng.integers(-(10**9), 10**9, size=b - a, dtype="int64")
            self.store.open_dataset(name).write_array("v", [a], data)
            self.model[name]["v"][a:b] = data
        elif op < 0.80:
            name = str(self.rng.choice(names))
            i = int(self.rng.integers(0, 5))
            text = f"w{self.wid} step {k} ✓"
            self.store.open_dataset(name).write_array("s", [i], np.array([text], dtype=object))
            self.model[name]["s"][i] = text
        else:
            name = str(self.rng.choice(names))
            self.store.open_dataset(name).set_attribute(f"k{k % 3}", k)
            self.model[name]["attrs"][f"k{k % 3}"] = k
        # Every step leaves a trace in the log of one live dataset.
        name = str(self.rng.choice(names))
        self.store.open_dataset(name).write_array("log", [k], np.array([k], dtype="int64"))
        self.model[name]["log"][k] = k

    def commit(self, compact: bool = False) -> None:
        while True:
            try:
                if compact:
                    self.store.compact()
                else:
                    self.store.flush()
                break
            except ConflictError:
                self.conflicts += 1
                self.store.refresh()  # must succeed: nobody else touches our datasets
        (self.compactions if compact else self.generations).append(self.store.generation)

    def result(self) -> dict:
        return {
            "wid": self.wid,
            "generations": self.generations,
            "compactions": self.compactions,
            "conflicts": self.conflicts,
            "model": {
                name: {"v": m["v"].tolist(), "log": m["log"].tolist(), "s": m["s"], "attrs": m["attrs"]}
                for name, m in self.model.items()
            },
        }


def main(argv: list[str]) -> int:
    argv, options = pop_options(argv)
    path, out, wid, steps, seed, max_pending, compact_every = argv[0], argv[1], *map(int, argv[2:7])
    go = argv[7] if len(argv) > 7 else path + ".go"
    if steps > LOG_LEN:
        raise SystemExit(f"at most {LOG_LEN} steps")
    writer = Writer(path, wid, seed, max_pending, options)
    open(out + ".ready", "w").close()  # imported and opened: the test says go once all are
    while not os.path.exists(go):  # start together, so that commits really interleave
        time.sleep(0.005)
    for k in range(steps):
        writer.step(k)
        writer.commit()
        if compact_every and k % compact_every == compact_every - 1:
            writer.commit(compact=True)
    writer.store.close()
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(writer.result(), fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
