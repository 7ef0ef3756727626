"""Every example script runs to completion in its own temporary directory."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

# Smaller runs of the scripts that take a size, so the suite stays quick.
ARGS = {"demo.py": ["60"], "03_dask_streaming.py": ["64"]}
# Optional dependencies an example needs (the test and cloud extras install them).
NEEDS = {
    "02_xarray.py": ["xarray"],
    "03_dask_streaming.py": ["xarray", "dask"],
    "08_object_store.py": ["obstore"],
}


def test_the_numbered_examples_cover_every_topic():
    numbered = [p.name for p in EXAMPLES if p.name[:2].isdigit()]
    assert len(numbered) >= 8, numbered
    for topic in ("basics", "xarray", "dask", "metadata", "codecs", "stats", "bulk", "object_store"):
        assert any(topic in name for name in numbered), f"no example about {topic}: {numbered}"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    missing = [m for m in NEEDS.get(script.name, []) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{script.name} needs {missing}")
    args = [sys.executable, str(script), *ARGS.get(script.name, [])]
    if script.name == "demo.py":
        args.append(str(tmp_path))  # the demo keeps its store; put it in the test's directory
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip(), "an example prints what it did"
    if script.name != "demo.py":  # self-contained: everything happens in a temporary directory
        assert not list(tmp_path.iterdir()), f"{script.name} left files in the working directory"
