"""The three benchmark workloads and their deterministic data.

This module needs only numpy: the upstream runner imports it inside the other
implementation's virtual environment, so both sides generate the very same values.
Dataset ``i`` is generated from ``numpy.random.default_rng(i)``: smooth fields
(one sinusoid per axis with a random frequency and phase) plus a small random walk
along the last axis, the same data for every benchmark row.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SWEEP_SIZES",
    "WORKLOADS",
    "Variable",
    "Workload",
    "dataset_name",
    "expected_box",
    "generate",
    "generate_many",
    "touched_chunks",
]


@dataclass(frozen=True)
class Variable:
    name: str
    dtype: str
    offset: float
    amplitude: float
    noise: float


@dataclass(frozen=True)
class Workload:
    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    variables: tuple[Variable, ...]
    sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    description: str

    @property
    def start(self) -> tuple[int, ...]:
        return (0,) * len(self.shape)

    @property
    def box(self) -> tuple[int, ...]:
        """The selection read from every variable of every dataset: the first 25% of each axis."""
        return tuple(math.ceil(s / 4) for s in self.shape)

    @property
    def var_names(self) -> list[str]:
        return [v.name for v in self.variables]

    def raw_bytes(self, n: int) -> int:
        """Uncompressed size of ``n`` datasets."""
        return n * math.prod(self.shape) * sum(np.dtype(v.dtype).itemsize for v in self.variables)

    def box_bytes(self, n: int) -> int:
        """Bytes returned by one bulk read of every variable from ``n`` datasets."""
        return n * math.prod(self.box) * sum(np.dtype(v.dtype).itemsize for v in self.variables)


WORKLOADS: dict[str, Workload] = {
    "sensors": Workload(
        name="sensors",
        dims=("time",),
        shape=(24,),
        chunks=(24,),
        variables=(
            Variable("temperature", "float32", 15.0, 5.0, 0.2),
            Variable("pressure", "float64", 1013.0, 8.0, 0.5),
            Variable("humidity", "float32", 60.0, 15.0, 1.0),
        ),
        sizes=(100, 1000),
        quick_sizes=(50,),
        description="3 variables (float32, float64, float32) of shape (24,) on `time`, one chunk",
    ),
    "profile": Workload(
        name="profile",
        dims=("depth", "time"),
        shape=(50, 168),
        chunks=(50, 168),
        variables=(
            Variable("TEMP", "float32", 12.0, 4.0, 0.05),
            Variable("PSAL", "float32", 35.0, 0.5, 0.01),
            Variable("DOXY", "float32", 250.0, 30.0, 1.0),
            Variable("CHLA", "float32", 0.5, 0.3, 0.02),
        ),
        sizes=(100, 1000),
        quick_sizes=(50,),
        description="4 variables (float32) of shape (50, 168) on (`depth`, `time`), one chunk",
    ),
    "gridded": Workload(
        name="gridded",
        dims=("lon", "lat", "time"),
        shape=(100, 100, 48),
        chunks=(50, 50, 24),
        variables=(
            Variable("t2m", "float32", 285.0, 10.0, 0.1),
            Variable("msl", "float64", 101325.0, 800.0, 5.0),
            Variable("tp", "float32", 0.002, 0.001, 0.0001),
        ),
        sizes=(100, 500),
        quick_sizes=(8,),
        description="3 variables (float32, float64, float32) of shape (100, 100, 48) on (`lon`, `lat`, `time`), "
        "chunks (50, 50, 24)",
    ),
}

#: Dataset counts of the scaling sweep (full run, quick run).
SWEEP_SIZES = {"full": (100, 1000, 10000), "quick": (100, 1000)}


def dataset_name(i: int) -> str:
    return f"ds_{i:05d}"


def generate(wl: Workload, i: int) -> dict[str, np.ndarray]:
    """The arrays of dataset ``i`` (C-contiguous, native dtype), from ``default_rng(i)``."""
    rng = np.random.default_rng(i)
    axes = [np.linspace(0.0, 1.0, n) for n in wl.shape]
    out: dict[str, np.ndarray] = {}
    for var in wl.variables:
        field = np.full(wl.shape, var.offset, dtype=np.float64)
        for ax, coord in enumerate(axes):
            freq = rng.uniform(0.5, 2.0)
            phase = rng.uniform(0.0, 2.0 * np.pi)
            wave = var.amplitude * np.sin(2.0 * np.pi * freq * coord + phase)
            field += wave.reshape([-1 if a == ax else 1 for a in range(len(wl.shape))])
        field += rng.standard_normal(wl.shape).cumsum(axis=-1) * var.noise
        out[var.name] = np.ascontiguousarray(field.astype(var.dtype))
    return out


def generate_many(wl: Workload, n: int) -> list[dict[str, np.ndarray]]:
    return [generate(wl, i) for i in range(n)]


def expected_box(wl: Workload, data: list[dict[str, np.ndarray]], n: int) -> dict[str, np.ndarray]:
    """What a bulk read of the first ``n`` datasets must return, per variable."""
    sl = tuple(slice(s, s + b) for s, b in zip(wl.start, wl.box))
    return {v: np.stack([data[i][v][sl] for i in range(n)]) for v in wl.var_names}


def touched_chunks(wl: Workload) -> list[tuple[tuple[slice, ...], tuple[slice, ...], tuple[slice, ...]]]:
    """The chunks a read of ``wl.box`` at ``wl.start`` touches.

    Returns ``(chunk slices in the array, source slices inside the chunk,
    destination slices inside the box)`` per chunk, in C order of the chunk grid.
    """
    ranges = []
    for s, b, c in zip(wl.start, wl.box, wl.chunks):
        ranges.append(range(s // c, (s + b - 1) // c + 1) if b else range(0))
    out = []
    for idx in itertools.product(*ranges):
        chunk_sl, src_sl, dst_sl = [], [], []
        for k, ci in enumerate(idx):
            c0 = ci * wl.chunks[k]
            c1 = min(c0 + wl.chunks[k], wl.shape[k])
            lo = max(c0, wl.start[k])
            hi = min(c1, wl.start[k] + wl.box[k])
            chunk_sl.append(slice(c0, c1))
            src_sl.append(slice(lo - c0, hi - c0))
            dst_sl.append(slice(lo - wl.start[k], hi - wl.start[k]))
        out.append((tuple(chunk_sl), tuple(src_sl), tuple(dst_sl)))
    return out
