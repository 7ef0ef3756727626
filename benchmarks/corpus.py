"""A corpus of CF-compliant in-situ profile files, modelled on ``GL_PR_BO_JLKU.nc``.

Each file is a Copernicus Marine In Situ "PR" (profile) file in the NetCDF-4 classic
model, with the structure of ``tests/data/GL_PR_BO_JLKU.nc``: dimensions ``TIME``
(profiles), ``DEPTH`` (levels), ``STRING32`` and ``STRLEN`` (character dimensions);
``TIME`` as ``days since 1950-01-01`` doubles, ``LATITUDE``/``LONGITUDE``/``DEPH``
coordinates, ``int8`` QC flags with ``_FillValue = -127b`` and the flag attributes,
``char`` variables (``DC_REFERENCE``, ``DIRECTION``, ``TRAJECTORY``), measured
variables with ``_FillValue = 9.96921e+36f`` (``TEMP``, ``PSAL``, ``FLU2``) and the
50 global attributes of the original, filled in per file.

Lengths vary per file: 1 to 4 profiles and 10 to 120 levels; profiles of one file end
at different depths, so the tail of the shorter ones is fill.  File ``i`` is a pure
function of ``i`` (``numpy.random.default_rng(i)``), so a corpus is reproducible.

Use::

    python benchmarks/corpus.py OUT_DIR -n 1000 [--subdirs 10] [-j 4]

or ``from corpus import make_corpus, write_profile`` (file names ``GL_PR_CT_P{i:05d}.nc``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["file_name", "make_corpus", "profile_dataset", "write_profile"]

FILL_F32 = np.float32(9.96921e36)
FILL_QC = np.int8(-127)
_QC_ATTRS = {
    "valid_min": np.int8(0),
    "valid_max": np.int8(9),
    "flag_values": np.arange(10, dtype=np.int8),
    "flag_meanings": "no_qc_performed good_data probably_good_data bad_data_that_are_potentially_correctable "
    "bad_data value_changed value_below_detection nominal_value interpolated_value missing_value",
}
_ENC = {"zlib": True, "complevel": 4, "shuffle": True}
_EPOCH = np.datetime64("1950-01-01T00:00:00", "ns")


def file_name(i: int) -> str:
    """The file name of profile file ``i``."""
    return f"GL_PR_CT_P{i:05d}.nc"


def _qc(long_name: str) -> dict:
    return {"long_name": long_name, **_QC_ATTRS}


def _global_attrs(
    i: int,
    rng: np.random.Generator,
    lat: np.ndarray,
    lon: np.ndarray,
    depth_max: float,
    t0: np.datetime64,
    t1: np.datetime64,
) -> dict:
    code = f"P{i:05d}"
    t0s = str(t0.astype("datetime64[s]")) + "Z"
    t1s = str(t1.astype("datetime64[s]")) + "Z"
    return {
        "platform_code": code,
        "platform_name": f"VESSEL {code}",
        "wmo_platform_code": code,
        "ices_platform_code": " ",
        "coriolis_platform_code": code,
        "site_code": " ",
        "comment": " ",
        "source": "vessel of opportunity",
        "source_platform_category_code": str(30 + i % 5),
        "institution": "Synthetic Oceanographic Institute",
        "institution_edmo_code": str(1000 + i % 97),
        "institution_country": ["Japan", "France", "Norway", "Chile"][i % 4],
        "institution_references": " ",
        "naming_authority": "Copernicus Marine In Situ",
        "summary": " ",
        "data_mode": "R",
        "wmo_instrument_type": np.int32(810 + i % 3),
        "area": "Global Ocean",
        "geospatial_lat_min": f"{lat.min():.5f}",
        "geospatial_lat_max": f"{lat.max():.5f}",
        "geospatial_lon_min": f"{lon.min():.5f}",
        "geospatial_lon_max": f"{lon.max():.5f}",
        "geospatial_vertical_min": "2.00",
        "geospatial_vertical_max": f"{depth_max:.2f}",
        "time_coverage_start": t0s,
        "time_coverage_end": t1s,
        "cdm_data_type": "profile",
        "featureType": "trajectoryProfile",
        "bottom_depth": " ",
        "last_date_observation": t1s,
        "last_latitude_observation": f"{lat[-1]:.5f}",
        "last_longitude_observation": f"{lon[-1]:.5f}",
        "references": "http://marine.copernicus.eu http://www.marineinsitu.eu",
        "license": "https://marine.copernicus.eu/user-corner/service-commitments-and-licence",
        "update_interval": "PT1H",
        "citation": "These data were collated within the Copernicus Marine Service (In Situ) and EMODnet "
        "collaboration framework. Data is made freely available by the Copernicus Marine Service and the "
        "programs that contribute to it.",
        "doi": "https://doi.org/10.13155/59938 https://doi.org/10.13155/40846",
        "creator_name": " ",
        "id": f"GL_PR_CT_{code}",
        "netcdf_version": "netCDF-4 classic model",
        "format_version": "2.0",
        "Conventions": "CF-1.11 Copernicus-InSituTAC-FormatManual-2.0.0 Copernicus-InSituTAC-ParametersList-3.3.0 "
        "Copernicus-InSituTAC-AttributesList-1.0.0",
        "date_modified": t1s,
        "history": f"{t1s} : Creation",
        "publisher_email": "cmems-service@ifremer.fr",
        "publisher_name": "Copernicus Marine Service",
        "publisher_url": "https://marine.copernicus.eu/ http://www.marineinsitu.eu/",
        "publisher_institution": "Ifremer",
        "title": "Global Ocean - In Situ Observation (synthetic corpus)",
        "bigram": "CT",
    }


def profile_dataset(i: int):
    """The ``xarray.Dataset`` of profile file ``i`` and its per-variable encoding."""
    import xarray as xr

    rng = np.random.default_rng(i)
    n_prof = int(rng.integers(1, 5))
    n_lev = int(rng.integers(10, 121))
    step = float(rng.choice([1.0, 2.0, 5.0]))
    depth = (2.0 + step * np.arange(n_lev)).astype(np.float32)
    # Each profile stops at its own depth; the deepest one uses every level.
    last = np.sort(rng.integers(max(1, n_lev // 2), n_lev + 1, n_prof))
    last[-1] = n_lev
    valid = np.arange(n_lev)[None, :] < last[:, None]

    seconds = np.sort(rng.integers(5000 * 86400, 27000 * 86400, n_prof))  # 1963 .. 2023, whole seconds
    time_ns = _EPOCH + seconds.astype("timedelta64[s]").astype("timedelta64[ns]")
    lat = rng.uniform(-60.0, 60.0, n_prof).astype(np.float32)
    lon = rng.uniform(-180.0, 180.0, n_prof).astype(np.float32)

    deph = np.where(valid, depth[None, :], FILL_F32).astype(np.float32)
    z = depth[None, :]
    temp = 4.0 + 22.0 * np.exp(-z / rng.uniform(80.0, 400.0)) + rng.normal(0.0, 0.05, (n_prof, n_lev))
    psal = 34.0 + 1.5 * np.tanh(z / 300.0) + rng.normal(0.0, 0.02, (n_prof, n_lev))
    flu2 = np.abs(0.3 + 0.5 * np.exp(-((z - 40.0) ** 2) / 800.0) + rng.normal(0.0, 0.03, (n_prof, n_lev)))

    def masked(values: np.ndarray) -> np.ndarray:
        return np.where(valid, np.round(values, 3), np.nan).astype(np.float32)

    def qc(good: float) -> np.ndarray:
        flags = np.where(rng.random((n_prof, n_lev)) < good, 1, 4).astype(np.float32)
        return np.where(valid, flags, np.nan).astype(np.float32)

    dc_ref = np.array([f"{int(x):08d}".encode() for x in rng.integers(10**7, 10**8, n_prof)], dtype="S32")
    direction = np.array([b"D" if d else b"A" for d in rng.random(n_prof) < 0.8], dtype="S1")
    dims2 = ("TIME", "DEPTH")
    coords_attr = "TIME LATITUDE LONGITUDE DEPH TRAJECTORY"
    ds = xr.Dataset(
        {
            "TIME_QC": ("TIME", np.ones(n_prof, np.float32), _qc("Time quality flag")),
            "POSITION_QC": ("TIME", np.ones(n_prof, np.float32), _qc("Position quality flag")),
            "DC_REFERENCE": ("TIME", dc_ref, {"long_name": "Station/Location unique identifier in data centre"}),
            "DIRECTION": (
                "TIME",
                direction,
                {
                    "long_name": "Direction of the profiles",
                    "flag_values": "A, D, U",
                    "flag_meanings": "ascending_profile descending_profile unknown",
                },
            ),
            "DEPH_QC": (dims2, qc(1.0), _qc("Depth quality flag")),
            "TEMP": (
                dims2,
                masked(temp),
                {
                    "long_name": "Sea temperature",
                    "standard_name": "sea_water_temperature",
                    "units": "degrees_C",
                    "coordinates": coords_attr,
                    "data_mode": "R",
                    "ancillary_variables": "TEMP_QC",
                    "valid_min": np.float32(-3.0),
                    "valid_max": np.float32(40.0),
                },
            ),
            "TEMP_QC": (dims2, qc(0.97), _qc("Sea temperature quality flag")),
            "PSAL": (
                dims2,
                masked(psal),
                {
                    "long_name": "Practical salinity",
                    "standard_name": "sea_water_practical_salinity",
                    "units": "0.001",
                    "coordinates": coords_attr,
                    "data_mode": "R",
                    "ancillary_variables": "PSAL_QC",
                    "valid_min": np.float32(0.0),
                    "valid_max": np.float32(45.0),
                },
            ),
            "PSAL_QC": (dims2, qc(0.95), _qc("Practical salinity quality flag")),
            "FLU2": (
                dims2,
                masked(flu2),
                {
                    "long_name": "Chlorophyll-a fluorescence",
                    "standard_name": "mass_concentration_of_chlorophyll_a_fluorescence_in_sea_water",
                    "units": "mg m-3",
                    "coordinates": coords_attr,
                    "data_mode": "R",
                    "ancillary_variables": "FLU2_QC",
                },
            ),
            "FLU2_QC": (dims2, qc(0.9), _qc("Chlorophyll-a fluorescence quality flag")),
        },
        coords={
            "TIME": (
                "TIME",
                time_ns,
                {
                    "long_name": "Time",
                    "standard_name": "time",
                    "valid_min": -90000.0,
                    "valid_max": 90000.0,
                    "uncertainty": " ",
                    "axis": "T",
                    "ancillary_variables": "TIME_QC",
                },
            ),
            "LATITUDE": (
                "TIME",
                lat,
                {
                    "long_name": "Latitude of each location",
                    "standard_name": "latitude",
                    "units": "degree_north",
                    "valid_min": np.float32(-90.0),
                    "valid_max": np.float32(90.0),
                    "uncertainty": " ",
                    "axis": "Y",
                    "ancillary_variables": "POSITION_QC",
                },
            ),
            "LONGITUDE": (
                "TIME",
                lon,
                {
                    "long_name": "Longitude of each location",
                    "standard_name": "longitude",
                    "units": "degree_east",
                    "valid_min": np.float32(-180.0),
                    "valid_max": np.float32(180.0),
                    "uncertainty": " ",
                    "axis": "X",
                    "ancillary_variables": "POSITION_QC",
                },
            ),
            "TRAJECTORY": (
                (),
                np.array(f"{i % 10000:04d}".encode(), dtype="S4"),
                {"long_name": "trajectory", "cf_role": "trajectory_id"},
            ),
            "DEPH": (
                dims2,
                deph,
                {
                    "long_name": "Depth",
                    "standard_name": "depth",
                    "units": "m",
                    "valid_min": np.float32(-12000.0),
                    "valid_max": np.float32(12000.0),
                    "uncertainty": " ",
                    "axis": "Z",
                    "positive": "down",
                    "reference": "sea_level",
                    "data_mode": "R",
                    "ancillary_variables": "DEPH_QC",
                },
            ),
        },
        attrs=_global_attrs(i, rng, lat, lon, float(depth[-1]), time_ns[0], time_ns[-1]),
    )
    encoding = {name: dict(_ENC) for name in ds.variables}
    for name in ("TIME_QC", "POSITION_QC", "DEPH_QC", "TEMP_QC", "PSAL_QC", "FLU2_QC"):
        encoding[name].update(dtype="int8", _FillValue=FILL_QC)
    for name in ("TEMP", "PSAL", "FLU2", "DEPH"):
        encoding[name]["_FillValue"] = FILL_F32
    for name in ("LATITUDE", "LONGITUDE"):
        encoding[name]["_FillValue"] = None
    encoding["TIME"].update(
        units="days since 1950-01-01T00:00:00Z", calendar="standard", dtype="float64", _FillValue=None
    )
    encoding["DC_REFERENCE"].update(char_dim_name="STRING32", _FillValue=b" ")
    encoding["DIRECTION"].update(_FillValue=b" ")
    encoding["TRAJECTORY"] = {"char_dim_name": "STRLEN"}
    return ds, encoding


def write_profile(path: str | os.PathLike, i: int) -> Path:
    """Write profile file ``i`` to ``path`` (NetCDF-4 classic model) and return the path."""
    ds, encoding = profile_dataset(i)
    path = Path(path)
    ds.to_netcdf(path, format="NETCDF4_CLASSIC", engine="netcdf4", encoding=encoding)
    return path


def _write_many(args: tuple[str, list[tuple[int, str]]]) -> int:
    root, items = args
    for i, rel in items:
        target = Path(root) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_profile(target, i)
    return len(items)


def make_corpus(root: str | os.PathLike, n: int, *, subdirs: int = 0, start: int = 0, jobs: int = 1) -> list[Path]:
    """Write profile files ``start .. start+n-1`` under ``root`` and return their paths (sorted).

    With ``subdirs=k`` file ``i`` goes to ``root/region_{i % k:02d}/``; otherwise all
    files are in ``root`` itself.  ``jobs > 1`` writes with that many processes.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(start, start + n):
        rel = f"region_{i % subdirs:02d}/{file_name(i)}" if subdirs else file_name(i)
        items.append((i, rel))
    if jobs > 1 and n > 1:
        parts = [items[k::jobs] for k in range(jobs)]
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(_write_many, [(str(root), p) for p in parts if p]))
    else:
        _write_many((str(root), items))
    return sorted(root / rel for _, rel in items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="directory to write the files into (created)")
    parser.add_argument("-n", type=int, default=100, help="number of files (default 100)")
    parser.add_argument("--start", type=int, default=0, help="index of the first file (default 0)")
    parser.add_argument("--subdirs", type=int, default=0, help="spread files over this many sub-directories")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="writer processes")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    paths = make_corpus(args.out, args.n, subdirs=args.subdirs, start=args.start, jobs=args.jobs)
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} files ({size / 2**20:.1f} MiB) to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
