"""Numba on demand: kernels are declared when their module is imported and compiled on first call.

``import numba`` takes a quarter of a second and most programs that import atlas
(the command line, ``atlas ls``, a script that only lists datasets) never run a
kernel.  A module of kernels creates one :class:`KernelModule` for its namespace
and declares each kernel with its :meth:`~KernelModule.jit` decorator, which returns
a :class:`Kernel`: a stand-in holding the plain Python function (``.py_func``, as on
a numba dispatcher).  The first call of any kernel of the module imports numba and
replaces *every* kernel of the module, in the module's namespace, by a real
dispatcher (numba types a call from one kernel to another by looking the callee up
in the caller's globals, so they must all be dispatchers by then).  Stand-ins that
other modules imported by name keep working: they forward to the dispatcher.

Compiled code is cached on disk (``cache=True``).  numba stores it next to the
source when that directory is writable, otherwise in the per-user cache directory
(``~/.cache/numba``, or ``NUMBA_CACHE_DIR`` when set).  When neither is usable the
kernels are compiled in memory for this process only, with one ``RuntimeWarning``.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["JIT_OPTIONS", "Kernel", "KernelModule"]

#: Every kernel releases the GIL and is cached on disk.
JIT_OPTIONS = {"nogil": True, "cache": True}

# One lock for every module: binding one module binds the modules its kernels call.
_BIND_LOCK = threading.RLock()


class Kernel:
    """A kernel declared with :meth:`KernelModule.jit`; compiled on first call.

    Calling it calls the numba dispatcher; any other attribute (``signatures``,
    ``stats``, ...) is the dispatcher's, except ``py_func``, the plain Python
    function, which needs no numba.
    """

    def __init__(self, py_func: Callable[..., Any], module: KernelModule) -> None:
        functools.update_wrapper(self, py_func)
        self.py_func = py_func
        self._module = module
        self._dispatcher: Any = None

    @property
    def dispatcher(self) -> Any:
        """The numba dispatcher (imports numba and binds the module on first use)."""
        if self._dispatcher is None:
            self._module.bind()
        return self._dispatcher

    def __call__(self, *args: Any) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.dispatcher
        return dispatcher(*args)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dispatcher, name)

    def __repr__(self) -> str:
        state = "bound" if self._dispatcher is not None else "not compiled yet"
        return f"<atlas kernel {self.py_func.__module__}.{self.py_func.__qualname__} ({state})>"


class KernelModule:
    """The kernels of one module, bound to numba dispatchers all at once.

    Parameters
    ----------
    namespace : dict
        The module's ``globals()``; its kernels (and stand-ins of other modules'
        kernels) are replaced there by dispatchers on binding.
    setup : callable, optional
        Run once with numba imported, before the dispatchers are made (to declare
        external functions the kernels call, for example).
    """

    def __init__(self, namespace: dict[str, Any], setup: Callable[[], None] | None = None) -> None:
        self._namespace = namespace
        self._setup = setup
        self._kernels: list[Kernel] = []
        self._bound = False

    def jit(self, py_func: Callable[..., Any]) -> Kernel:
        """Declare ``py_func`` a kernel of this module (a decorator)."""
        kernel = Kernel(py_func, self)
        self._kernels.append(kernel)
        return kernel

    @property
    def bound(self) -> bool:
        """Whether numba dispatchers have been made for this module."""
        return self._bound

    def bind(self) -> None:
        """Import numba and make the dispatchers of every kernel of the module (once)."""
        if self._bound:
            return
        with _BIND_LOCK:
            if self._bound:
                return
            import numba

            if self._setup is not None:
                self._setup()
            made = {id(k): _dispatcher(numba, k.py_func) for k in self._kernels}
            for name, value in list(self._namespace.items()):
                if not isinstance(value, Kernel):
                    continue
                # Another module's kernel imported by name binds that module (lazily:
                # made.get(..., value.dispatcher) would bind it even when not needed).
                mine = made.get(id(value))
                self._namespace[name] = mine if mine is not None else value.dispatcher
            for kernel in self._kernels:
                kernel._dispatcher = made[id(kernel)]
            self._bound = True


_cache_warned = False


def _dispatcher(numba: Any, py_func: Callable[..., Any]) -> Any:
    global _cache_warned
    try:
        return numba.njit(**JIT_OPTIONS)(py_func)
    except RuntimeError as exc:  # numba found no writable cache directory ("no locator available")
        if not _cache_warned:
            _cache_warned = True
            warnings.warn(
                f"numba cannot cache compiled kernels ({exc}); they are compiled for this process only. "
                "Set NUMBA_CACHE_DIR to a writable directory to keep them.",
                RuntimeWarning,
                stacklevel=2,
            )
        return numba.njit(**{**JIT_OPTIONS, "cache": False})(py_func)
