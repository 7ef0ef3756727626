"""The documentation builds, covers every public name, and its quickstart runs."""

from __future__ import annotations

import argparse
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
from atlas.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Pages whose python blocks run as one script, in order, in an empty directory.
RUNNABLE_PAGES = ["quickstart.md", "concepts.md", "reading.md", "finding.md", "growing.md"]


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
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    # the reference is generated from docstrings: every public class and error has its entry
    wanted = [f"atlas.{n}" for n in ("Atlas", "DatasetView")] + [f"atlas.errors.{n}" for n in atlas_error_names()]
    missing = [n for n in wanted if f'id="{n}"' not in api]
    assert not missing, f"not in the generated API reference: {missing}"


def atlas_error_names() -> list[str]:
    """Every class in ``atlas.errors`` that is an ``AtlasError`` (discovered, not listed)."""
    return sorted(
        n for n, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.AtlasError) and obj.__module__ == errors.__name__
    )  # fmt: skip


def cli_subcommands() -> list[str]:
    """The subcommands of the ``atlas`` command, read from its argparse parser."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_discovery_finds_the_known_names():
    # guards the discovery itself: an empty list would make the coverage test vacuous
    assert {"AtlasError", "ConflictError", "SelectionError", "ChecksumError"} <= set(atlas_error_names())
    assert {"create", "append", "ls", "verify"} <= set(cli_subcommands())


def test_every_public_name_error_and_command_is_documented():
    text = all_docs_text()
    missing = [f"atlas.__all__: {n}" for n in atlas.__all__ if n not in text]
    missing += [f"atlas.errors: {n}" for n in atlas_error_names() if not re.search(rf"\b{n}\b", text)]
    missing += [f"CLI: atlas {c}" for c in cli_subcommands() if not re.search(rf"\batlas {c}\b", text)]
    public_methods = [
        f"{cls.__name__}.{name}" for cls in (atlas.Atlas, atlas.DatasetView)
        for name, obj in vars(cls).items() if not name.startswith("_")
    ]  # fmt: skip
    missing += [m for m in public_methods if not re.search(rf"\b{m.split('.')[1]}\b", text)]
    assert not missing, f"not in docs/ or README.md: {missing}"


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in nav_pages(v)]
    if isinstance(nav, list):
        return [p for v in nav for p in nav_pages(v)]
    return []


def test_every_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert not [p for p in pages if p not in listed], "add these pages to the nav in mkdocs.yml"
    assert not [p for p in listed if p not in pages], "the nav names pages that do not exist"


def test_installation_names_every_extra():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    page = (DOCS / "installation.md").read_text(encoding="utf-8")
    assert not [e for e in extras if f"`{e}`" not in page]


def test_every_public_callable_has_a_docstring():
    for cls in (atlas.Atlas, atlas.DatasetView):
        for name, obj in vars(cls).items():
            if not name.startswith("_") and (callable(obj) or isinstance(obj, (property, classmethod))):
                assert inspect.getdoc(getattr(cls, name)), f"{cls.__name__}.{name} has no docstring"


def code_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    blocks = code_blocks(DOCS / page)
    assert blocks
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)


def test_guide_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    runnable = [b for b in code_blocks(DOCS / "guide.md") if "store.flush()" in b or "atlas.Atlas.create" in b]
    assert runnable
    for block in runnable:  # the other blocks are fragments that need context
        exec(compile(block, "guide.md", "exec"), namespace)


def test_dask_page_runs_on_a_local_cluster(tmp_path, monkeypatch):
    pytest.importorskip("xarray")
    pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    (block,) = code_blocks(DOCS / "dask.md")
    namespace: dict = {"__name__": "__main__"}
    exec(compile(block, "dask.md", "exec"), namespace)
    assert namespace["lazy"].t2m.data.npartitions == 16


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (block,) = code_blocks(ROOT / "README.md")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["first_hours"].shape == (3, 6)
