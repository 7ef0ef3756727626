"""Time the original implementation (``atlas-python``) in its own interpreter.

``run.py --upstream PYTHON`` starts ``PYTHON benchmarks/upstream_runner.py SPEC_JSON``
with a temporary working directory, so ``import atlas`` finds the other
implementation's package, not this repository's.  The runner generates the same
data (``workloads.generate``), times writes and reads with the same code as the
in-process rows (``atlas_api.bench_store``), and prints one JSON object on stdout;
progress goes to stderr.

SPEC_JSON: ``{"tmp": DIR, "workload": NAME, "sizes": [N, ...], "read_repeats": K,
"write_repeats": W}``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
from atlas_api import bench_store
from timing import log
from workloads import WORKLOADS, generate_many


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    import atlas

    wl = WORKLOADS[spec["workload"]]
    sizes = [int(n) for n in spec["sizes"]]
    tmp = Path(spec["tmp"])
    tmp.mkdir(parents=True, exist_ok=True)
    log(f"  [upstream] atlas {atlas.__version__} from {atlas.__file__}; generating {max(sizes)} {wl.name} datasets")
    data = generate_many(wl, max(sizes))
    results = {}
    for n in sizes:
        results[str(n)] = bench_store(
            atlas,
            wl,
            data,
            n,
            tmp,
            read_repeats=int(spec["read_repeats"]),
            write_repeats=int(spec["write_repeats"]),
            close_readers=False,  # close() of atlas-python flushes; read handles are just dropped
            label="upstream",
        )
    out = {
        "atlas_version": getattr(atlas, "__version__", "?"),
        "atlas_file": atlas.__file__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "results": results,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
