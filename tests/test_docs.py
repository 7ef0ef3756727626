"""The documentation builds, covers every public name, and its quickstart runs."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import atlas
from atlas import errors

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def all_docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))) + (
        ROOT / "README.md"
    ).read_text(encoding="utf-8")


def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_every_public_name_and_error_is_documented():
    text = all_docs_text()
    missing = [n for n in atlas.__all__ if n not in text]
    error_classes = [n for n, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, Exception)]
    missing += [n for n in error_classes if n not in text]
    public_methods = [
        f"{cls.__name__}.{name}" for cls in (atlas.Atlas, atlas.DatasetView)
        for name, obj in vars(cls).items() if not name.startswith("_")
    ]
    missing += [m for m in public_methods if m.split(".")[1] not in text]
    assert not missing, f"not in docs/ or README.md: {missing}"


def test_every_public_callable_has_a_docstring():
    for cls in (atlas.Atlas, atlas.DatasetView):
        for name, obj in vars(cls).items():
            if not name.startswith("_") and (callable(obj) or isinstance(obj, (property, classmethod))):
                assert inspect.getdoc(getattr(cls, name)), f"{cls.__name__}.{name} has no docstring"


def code_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", ["quickstart.md", "guide.md"])
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = code_blocks(DOCS / page)
    assert blocks
    for block in blocks:
        if page == "guide.md" and "store.flush()" not in block and "atlas.Atlas.create" not in block:
            continue  # fragments of the guide that need context; the quickstart runs whole
        exec(compile(block, f"{page}", "exec"), namespace)


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (block,) = code_blocks(ROOT / "README.md")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["first_hours"].shape == (3, 6)
