"""Local object-store services for the cloud tests, and pytest fixtures that start them.

* :class:`MotoS3` -- moto's ``ThreadedMotoServer`` (an S3 emulator) in a daemon thread of
  this process, on ``127.0.0.1`` and an ephemeral port.
* :class:`Azurite` -- the Azure Blob emulator (``azurite-blob``, installed by
  ``make test`` into ``.cache/azurite`` when node is present) as a child process on
  ``127.0.0.1`` and an ephemeral port, telemetry off, data in memory.  It dies with
  this process (``PR_SET_PDEATHSIG`` on Linux) and in any case after
  :data:`AZURITE_LIFETIME` seconds (``timeout``).
* :class:`RangeHTTPServer` -- a plain static file server with byte ranges, ETags and
  ``HEAD`` (no listing, like most real file servers), in a daemon thread.

Every service listens on loopback only, every client is configured with few retries
and short timeouts, and every wait is bounded.  A service that cannot be started
raises :class:`Unavailable`; the fixtures turn that into ``pytest.skip(reason)``.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
#: Seconds an Azurite child may live at most (it normally stops with the session).
AZURITE_LIFETIME = 1800
#: The emulator's fixed, public development account (documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#: obstore retry/timeouts for tests: fail fast instead of backing off for minutes.
RETRY = {
    "max_retries": 1,
    "backoff": {"init_backoff": timedelta(milliseconds=10), "max_backoff": timedelta(milliseconds=100), "base": 2},
    "retry_timeout": timedelta(seconds=10),
}
CLIENT = {"allow_http": True, "timeout": "30s", "connect_timeout": "5s"}


class Unavailable(RuntimeError):
    """A service cannot be installed or started here (the message says why)."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- S3: moto ---------------------------------------------------------------------------------------


class MotoS3:
    """moto's S3 emulator on an ephemeral loopback port."""

    def __init__(self) -> None:
        try:
            import boto3
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise Unavailable(f"moto[server] is not installed ({exc}); pip install 'moto[server]'") from None
        self._boto3 = boto3
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def bucket(self) -> str:
        name = unique("atlas")
        self._client.create_bucket(Bucket=name)
        return name

    def options(self) -> dict[str, Any]:
        """obstore options for ``s3://`` URLs pointing at this server."""
        return {
            "endpoint": self.endpoint,
            "access_key_id": "testing",
            "secret_access_key": "testing",
            "region": "us-east-1",
            "client_options": CLIENT,
            "retry_config": RETRY,
        }

    def store(self, bucket: str, prefix: str | None = None) -> Any:
        from obstore.store import S3Store

        opts = self.options()
        return S3Store(
            bucket,
            prefix=prefix,
            endpoint=opts["endpoint"],
            access_key_id="testing",
            secret_access_key="testing",
            region="us-east-1",
            client_options=CLIENT,
            retry_config=RETRY,
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._server.stop()


# -- Azure: Azurite ---------------------------------------------------------------------------------


def azurite_executable() -> str | None:
    local = PROJECT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Azurite:
    """The Azure Blob emulator as a child process on an ephemeral loopback port."""

    def __init__(self, startup_timeout: float = 30.0) -> None:
        if shutil.which("node") is None:
            raise Unavailable("node is not installed (Azurite needs it)")
        exe = azurite_executable()
        if exe is None:
            raise Unavailable("Azurite is not installed: `make .cache/azurite/node_modules/.bin/azurite` (needs node)")
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            raise Unavailable("azure-storage-blob is not installed (creates the test container)") from None
        self._service_cls = BlobServiceClient
        self._log = tempfile.NamedTemporaryFile(prefix="azurite-", suffix=".log", delete=False)  # noqa: SIM115
        self._workdir = tempfile.mkdtemp(prefix="azurite-")
        cmd = [
            exe,
            "--blobHost",
            LOOPBACK,
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ]
        if shutil.which("timeout"):
            cmd = ["timeout", "-k", "5", str(AZURITE_LIFETIME), *cmd]
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self._workdir,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
        deadline = time.monotonic() + startup_timeout
        self.url = None
        while time.monotonic() < deadline:
            text = Path(self._log.name).read_text(errors="replace")
            m = re.search(r"listens on (http://\S+)", text)
            if m:
                self.url = m.group(1).rstrip("/")
                break
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.url is None:
            text = Path(self._log.name).read_text(errors="replace")[-2000:]
            self.stop()
            raise Unavailable(f"Azurite did not start within {startup_timeout:.0f} s: {text.strip() or 'no output'}")
        self.endpoint = f"{self.url}/{AZURITE_ACCOUNT}"
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )
        self._service = BlobServiceClient.from_connection_string(conn, retry_total=1)

    def container(self) -> str:
        name = unique("atlas")
        self._service.create_container(name, timeout=20)
        return name

    def options(self) -> dict[str, Any]:
        """obstore options for ``az://container/prefix`` URLs pointing at this server."""
        return {
            "account_name": AZURITE_ACCOUNT,
            "account_key": AZURITE_KEY,
            "endpoint": self.endpoint,
            "client_options": CLIENT,
            "retry_config": RETRY,
        }

    def store(self, container: str, prefix: str | None = None) -> Any:
        from obstore.store import AzureStore

        return AzureStore(
            container,
            prefix=prefix,
            account_name=AZURITE_ACCOUNT,
            account_key=AZURITE_KEY,
            endpoint=self.endpoint,
            client_options=CLIENT,
            retry_config=RETRY,
        )

    def stop(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
        shutil.rmtree(getattr(self, "_workdir", ""), ignore_errors=True)


# -- HTTP: a static range server --------------------------------------------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD of files with single byte ranges, ETag and Last-Modified; nothing else."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _refuse(self, code: int) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def do_PROPFIND(self) -> None:  # no listing, like a plain file server
        self.server.requests += 1  # type: ignore[attr-defined]
        self._refuse(405)

    def do_PUT(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self._refuse(405)

    do_DELETE = do_PUT
    do_POST = do_PUT

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        path = self.translate_path(self.path.split("?", 1)[0])
        if not os.path.isfile(path):
            self._refuse(404)
            return
        st = os.stat(path)
        size = st.st_size
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._refuse(416)
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size or end < start:
                self.close_connection = True
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{st.st_mtime_ns:x}-{size:x}"')
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if body:
            with open(path, "rb") as fh:
                fh.seek(start)
                self.wfile.write(fh.read(end - start + 1))


class RangeHTTPServer:
    """Serve ``root`` read-only over HTTP on an ephemeral loopback port."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

        def handler(*args: Any, **kw: Any) -> _RangeHandler:
            return _RangeHandler(*args, directory=str(self.root), **kw)

        self._httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.requests = 0  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"

    @property
    def requests(self) -> int:
        return self._httpd.requests  # type: ignore[attr-defined]

    def store(self, sub: str = "") -> Any:
        from obstore.store import HTTPStore

        return HTTPStore.from_url(f"{self.url}/{sub}".rstrip("/"), client_options=CLIENT, retry_config=RETRY)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


# -- fixtures ---------------------------------------------------------------------------------------


def _start(kind: str, factory: Any) -> Any:
    try:
        return factory()
    except Unavailable as exc:
        pytest.skip(f"{kind} unavailable: {exc}")
    except Exception as exc:  # a service that fails to start is skipped, never silently passed
        pytest.skip(f"{kind} could not be started: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="session")
def moto_s3():
    pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    server = _start("S3 emulator (moto)", MotoS3)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite():
    pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    server = _start("Azure emulator (Azurite)", Azurite)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http_server(tmp_path_factory):
    pytest.importorskip("obstore", reason="obstore (the 'cloud' extra) is not installed")
    server = _start("HTTP range server", lambda: RangeHTTPServer(tmp_path_factory.mktemp("http-root")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket(moto_s3):
    return moto_s3.bucket()


@pytest.fixture(scope="session")
def azure_container(azurite):
    return azurite.container()


# -- instrumentation and reference data shared by the cloud tests -----------------------------------


class RecordingBackend:
    """Forward every backend verb to ``inner``, log ``(verb, path, ranges)``, optionally sleep.

    ``latency`` seconds are added to every call (one call is one round trip: the
    ranges of one ``get_ranges`` call are fetched in parallel).  The tuning
    attributes of the inner backend (``max_concurrency``, ...) are mirrored so the
    engine behaves as it would without the wrapper.  No ``map``: reads take the
    range-request path.
    """

    def __init__(self, inner: Any, latency: float = 0.0) -> None:
        self.inner = inner
        self.latency = latency
        self.calls: list[tuple[str, str, list[tuple[int, int]]]] = []
        self._lock = threading.Lock()
        #: Calls in flight now, and the most ever in flight at once.
        self.inflight = 0
        self.max_inflight = 0
        for name in ("max_concurrency", "coalesce_bytes", "max_request_bytes"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def read_only(self) -> bool:
        return self.inner.read_only

    @contextlib.contextmanager
    def _call(self, verb: str, path: str, ranges: list[tuple[int, int]] | None = None) -> Any:
        with self._lock:
            self.calls.append((verb, path, ranges or []))
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.latency:
                time.sleep(self.latency)
            yield
        finally:
            with self._lock:
                self.inflight -= 1

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.max_inflight = 0

    def count(self, verb: str | None = None) -> int:
        return sum(1 for c in self.calls if verb is None or c[0] == verb)

    def ranges(self) -> int:
        return sum(len(c[2]) for c in self.calls if c[0] == "get_ranges")

    def get(self, path):
        with self._call("get", path):
            return self.inner.get(path)

    def get_versioned(self, path):
        with self._call("get_versioned", path):
            return self.inner.get_versioned(path)

    def get_ranges(self, path, starts, lengths):
        with self._call("get_ranges", path, [(int(s), int(n)) for s, n in zip(starts, lengths)]):
            return self.inner.get_ranges(path, starts, lengths)

    def size(self, path):
        with self._call("size", path):
            return self.inner.size(path)

    def exists(self, path):
        with self._call("exists", path):
            return self.inner.exists(path)

    def put(self, path, parts):
        with self._call("put", path):
            return self.inner.put(path, parts)

    def commit(self, path, data, expected):
        with self._call("commit", path):
            return self.inner.commit(path, data, expected)

    def delete(self, path):
        with self._call("delete", path):
            return self.inner.delete(path)

    def list(self, prefix=""):
        with self._call("list", prefix):
            return list(self.inner.list(prefix))

    def close(self) -> None:
        self.inner.close()


def populate(store: Any, n: int = 12, flushes: int = 3) -> None:
    """Write ``n`` datasets covering every dtype, fills, partial writes, attributes, 0-D arrays.

    The datasets are committed over ``flushes`` flushes, so every array name has
    several segments.
    """
    import numpy as np

    per_flush = max(1, -(-n // flushes))
    for i in range(n):
        rng = np.random.default_rng(i)
        ds = store.create_dataset(f"d{i:03d}")
        ds.define_array("grid", "float64", ["x", "y", "t"], [13, 11, 7], chunk_shape=[5, 4, 3], fill_value=-1.0)
        if i % 4:
            ds.write_array("grid", [0, 0, 0], rng.standard_normal((13, 11, 7)).cumsum(0))
        else:  # some chunks stay unwritten (fill)
            ds.write_array("grid", [5, 4, 0], rng.standard_normal((4, 4, 7)))
        ds.define_array("flag", "bool", ["t"], [7])
        ds.write_array("flag", [0], rng.random(7) > 0.5)
        ds.define_array("when", "timestamp_nanoseconds", ["t"], [7])
        ds.write_array("when", [0], np.arange(7).astype("datetime64[ns]") + i)
        ds.define_array("name", "string", ["t"], [3])
        ds.write_array("name", [0], np.array([f"n{i}", "é", ""], dtype=object))
        ds.define_array("count", "uint16", ["t"], [7], fill_value=9)
        ds.define_array("small", "int8", [], [])
        ds.write_array("small", [], np.array(-i % 100, "int8"))
        ds.define_array("big", "uint64", ["t"], [2])
        ds.write_array("big", [0], np.array([2**64 - 1 - i, i], "uint64"))
        if i % 3 == 0:
            ds.define_array("sparse", "int32", ["t"], [7])
            ds.write_array("sparse", [2], np.full(3, i, "int32"))
        ds.define_array("noise", "uint8", ["b"], [4096])  # incompressible: stored raw
        ds.write_array("noise", [0], rng.integers(0, 256, 4096, dtype="uint8"))
        ds.set_attribute("title", f"dataset {i} \u00e9 \u2603")
        ds.set_attribute("index", i)
        ds.set_attribute("scale", 0.5 * i)
        ds.set_attribute("nan", float("nan"))
        if (i + 1) % per_flush == 0:
            store.flush()
    store.flush()


def snapshot(store: Any) -> dict[str, Any]:
    """Everything readable from a store, as plain comparable values (NaN-safe)."""
    import math

    import numpy as np

    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            if v.dtype.kind == "f":
                return ("f", v.dtype.str, v.shape, np.where(np.isnan(v), 1e308, v).tolist())
            if v.dtype.kind == "M":
                return ("M", v.shape, v.astype("int64").tolist())
            return (v.dtype.str, v.shape, v.tolist())
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        if isinstance(v, dict):
            return {k: plain(x) for k, x in sorted(v.items())}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            return plain(v.item())
        return v

    out: dict[str, Any] = {"datasets": store.list_datasets(), "arrays": store.list_arrays()}
    for name in store.list_datasets():
        ds = store.open_dataset(name)
        entry: dict[str, Any] = {"attributes": plain(ds.attributes())}
        for array in ds.list_arrays():
            entry[array] = {
                "data": plain(ds.read_array(array)),
                "meta": plain(ds.array_meta(array)),
                "stats": plain(ds.array_stats(array)),
                "fill": plain(ds.array_fill_value(array)),
            }
            meta = ds.array_meta(array)
            shape = list(meta["shape"])
            if shape and all(s > 1 for s in shape):
                start = [1] * len(shape)
                box = [s - 2 for s in shape]
                entry[array]["box"] = plain(ds.read_array(array, start, box))
        out[name] = entry
    names = store.list_datasets()
    for array in store.list_arrays():
        out[f"across:{array}"] = plain(store.read_array_across(array, names))

    def having(array: str) -> list[str]:
        return [n for n in names if store.open_dataset(n).has_array(array)]

    out["stacked:grid"] = plain(store.read_array_across_stacked("grid", having("grid"), [2, 1, 1], [9, 8, 5]))
    out["stacked:noise"] = plain(store.read_array_across_stacked("noise", having("noise")[::-1]))
    return out
