"""A reader that checks every snapshot it sees while gen_writer.py commits.

``MODE`` is ``open`` (a fresh ``Atlas.open(mode="r")`` per snapshot) or ``refresh``
(one long-lived handle moved forward with ``refresh()``).  Each snapshot must be a
complete generation (see gen_writer.py for the invariant) and generations never go
backwards.  It runs until the writer's DONE_FLAG exists (then checks one last
snapshot) and writes a JSON report to OUT.  The first violation or unexpected
exception is reported with its traceback and ends the run.

Usage: ``python snapshot_reader.py STORE MODE DONE_FLAG OUT [--storage-options=JSON]``
(``STORE`` a directory, or a URL with its obstore options, see
``rel_common.options_arg``).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback

import numpy as np
from gen_writer import N_DATASETS
from rel_common import pop_options

import atlas


class Violation(AssertionError):
    pass


def check(store: atlas.Atlas) -> int | None:
    """Check the invariant on this handle's snapshot; return its generation (None before the first)."""
    if "counter" not in store:
        return None
    counter = store.open_dataset("counter")
    g = int(counter.get_attribute("gen"))
    c = counter.read_array("c")
    if c.tolist() != [g]:
        raise Violation(f"counter array {c.tolist()} but counter attribute gen={g}")
    tags = counter.read_array("tag").tolist()
    if tags != [f"g{g}"] * 3:
        raise Violation(f"generation {g}: counter tags {tags}")
    names = [f"g{i}" for i in range(N_DATASETS)]
    if sorted(n for n in store.list_datasets() if n != "counter") != names:
        raise Violation(f"generation {g}: datasets {store.list_datasets()}")
    xs = []
    for name in names:
        ds = store.open_dataset(name)
        attrs = ds.attributes()
        if attrs.get("gen") != g:
            raise Violation(f"generation {g}: dataset {name} has gen={attrs.get('gen')}")
        x = ds.read_array("x")
        if float(x.sum()) != attrs["sum"]:
            raise Violation(f"generation {g}: {name} sums to {float(x.sum())}, its attribute says {attrs['sum']}")
        stats = ds.array_stats("x")
        if (stats["min"], stats["max"], stats["null_count"]) != (x.min(), x.max(), 0):
            raise Violation(f"generation {g}: {name} stats {stats} vs cells min {x.min()} max {x.max()}")
        xs.append(x)
    stacked = store.read_array_across_stacked("x", names)
    if not np.array_equal(stacked, np.stack(xs)):
        raise Violation(f"generation {g}: read_array_across_stacked differs from per-dataset reads")
    return g


def main(argv: list[str]) -> int:
    argv, options = pop_options(argv)
    path, mode, done, out = argv
    report: dict = {"mode": mode, "snapshots": 0, "generations": [], "error": None}
    seen: set[int] = set()
    last = -1
    handle = atlas.Atlas.open(path, mode="r", storage_options=options) if mode == "refresh" else None
    try:
        while True:
            finished = os.path.exists(done)
            if mode == "open":
                with atlas.Atlas.open(path, mode="r", storage_options=options) as store:
                    g = check(store)
            else:
                handle.refresh()
                g = check(handle)
            if g is not None:
                if g < last:
                    raise Violation(f"generation went backwards: {last} -> {g}")
                last = g
                seen.add(g)
                report["snapshots"] += 1
            if not os.path.exists(out + ".ready"):
                open(out + ".ready", "w").close()  # the test starts the writer once every reader is up
            if finished:
                break
            time.sleep(random.uniform(0.01, 0.04))  # leave the writer some CPU
    except BaseException:
        report["error"] = traceback.format_exc()
    report["generations"] = sorted(seen)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    return 1 if report["error"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
