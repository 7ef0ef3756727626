"""Register the ``xr.Dataset.atlas`` accessor without making ``import atlas`` import xarray.

``import atlas`` calls :func:`install`: when xarray is already imported the accessor
is registered at once (by importing :mod:`atlas.xarray`); otherwise a finder on
``sys.meta_path`` waits for ``import xarray``, wraps xarray's loader so that the
accessor is registered right after xarray's own module has run, and removes itself.
A program that never imports xarray never pays for it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import sys
from typing import Any

__all__ = ["install"]

logger = logging.getLogger("atlas")


def _register() -> None:
    try:
        import atlas.xarray  # noqa: F401  (its import registers the accessor)
    except Exception as exc:  # never break the user's `import xarray`
        logger.debug("could not register the xr.Dataset.atlas accessor: %s", exc)


class _RegisteringLoader(importlib.abc.Loader):
    """xarray's own loader, plus the registration once xarray's module has run."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # The module keeps xarray's real loader (importlib.resources and reloads ask it).
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _XarrayFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands xarray's spec back with a registering loader."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "xarray":
            return None
        _remove()
        spec = importlib.util.find_spec("xarray")  # the other finders, this one is gone
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


_FINDER = _XarrayFinder()


def _remove() -> None:
    with contextlib.suppress(ValueError):  # already removed
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Register the accessor now if xarray is imported, else when it gets imported."""
    module = sys.modules.get("xarray")
    if module is not None:
        spec = getattr(module, "__spec__", None)
        # An xarray still mid-import (something it imports imported atlas) is half built:
        # then the accessor is registered when atlas.xarray itself gets imported.
        if not getattr(spec, "_initializing", False):
            _register()
        return
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
