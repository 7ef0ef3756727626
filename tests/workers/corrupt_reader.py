"""Open and read damaged copies of a real store, under a memory limit (test_hostile.py).

For each trial, a copy of a pristine template store gets one mutation of its
manifest or of one segment file (random bit flips, byte overwrites, truncation,
garbage appended, files deleted or swapped, and *forgeries*: fields of the manifest,
of a segment's chunk index, footer, blosc chunk header or string chunk replaced by
hostile values, with every checksum recomputed so that only the format's own length
and range checks stand between the bytes and the allocator).  The copy is then
opened read-only and everything is read: attributes, array schemas, stats, fill
values, every array (a bounded window of very large ones), cross-dataset reads, and
``verify()``.

Rules checked per trial (a violation is reported with its traceback):

* every call returns or raises an ``atlas.errors.AtlasError``; nothing else
  (``MemoryError`` under the address-space limit means an allocation sized from a
  forged field; a segfault ends the process and names the trial in progress);
* after accidental damage to a segment (bit flips, overwrites, truncation, garbage,
  deleted or swapped files), every read that succeeds returns exactly what the
  pristine store returns: checksums must catch damage, never return wrong numbers.
  (Forgeries recompute the checksums, so for them only the first rule applies.)

The address space is limited with ``RLIMIT_AS`` to what the process uses after
warming up plus ``MEM_LIMIT_MB``.

Usage: ``python corrupt_reader.py TEMPLATE WORKDIR SEED FIRST COUNT MEM_LIMIT_MB OUT``
(trials ``FIRST .. FIRST+COUNT-1``; one JSON line per trial is appended to OUT,
``started`` lines before each, so a crash is attributable).
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import resource
import shutil
import struct
import sys
import traceback
from typing import Any

import blosc2
import msgpack
import numpy as np
from rel_common import _enc

import atlas
from atlas.engine.codecs import checksum
from atlas.engine.segment import FOOTER_SIZE, RECORD_DTYPE
from atlas.errors import AtlasError
from atlas.metadata import parse_manifest_filename

HOSTILE_INTS = [0, 1, 7, 63, 64, 2**31 - 1, 2**31, 2**32, 2**32 + 8, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
HOSTILE_JSON = [
    -1,
    0,
    1,
    2**31,
    2**62,
    2**63,
    2**64,
    10**30,
    -(2**63) - 1,
    1.5,
    -0.0,
    "",
    "x",
    "NaN",
    "Infinity",
    "../../etc",
    "a/b",
    None,
    True,
    [],
    {},
    [[[[[]]]]],
    {"t": "complex128", "v": 1},
    "é" * 3000,
    [2**40, 2**40],
    [-1],
]
#: The window read from a very large (forged) array.
WINDOW = 8
MAX_FULL_READ = 1 << 16


# -- manifest trees ------------------------------------------------------------------------------


def manifest_name(store: str) -> str:
    names = [n for n in os.listdir(store) if parse_manifest_filename(n)]
    assert len(names) == 1, names
    return names[0]


def load_tree(store: str) -> tuple[str, Any]:
    name = manifest_name(store)
    fmt, comp = parse_manifest_filename(name)
    with open(os.path.join(store, name), "rb") as fh:
        raw = fh.read()
    if comp != "none":
        raw = blosc2.decompress2(raw)
    obj = json.loads(bytes(raw)) if fmt == "json" else msgpack.unpackb(raw, raw=False)
    return name, obj


def save_tree(store: str, name: str, obj: Any) -> None:
    fmt, comp = parse_manifest_filename(name)
    if fmt == "json":
        raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    else:
        raw = msgpack.packb(obj, use_bin_type=True)
    if comp != "none":
        codec = blosc2.Codec.ZSTD if comp == "zstd" else blosc2.Codec.LZ4
        raw = bytes(blosc2.compress2(raw, codec=codec, clevel=5, filter=blosc2.Filter.NOFILTER, typesize=1))
    with open(os.path.join(store, name), "wb") as fh:
        fh.write(raw)


def tree_paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indexes) inside a decoded manifest."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(tree_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(tree_paths(v, (*prefix, i)))
    return out


def set_path(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return obj


def segments_of(obj: Any) -> list[tuple[str, str, list]]:
    """``(array name, relative path, manifest entry)`` of every live segment."""
    return [
        (array, f"{fam['dir']}/{entry[0]}", entry) for array, fam in obj["arrays"].items() for entry in fam["segments"]
    ]


# -- mutations -----------------------------------------------------------------------------------


def raw_mutation(rng: random.Random, path: str) -> str:
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    kind = rng.choice(["bitflip", "overwrite", "truncate", "append", "zero-range", "empty"])
    if kind == "bitflip" and data:
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
    elif kind == "overwrite" and data:
        pos = rng.randrange(len(data))
        n = rng.randint(1, 16)
        fill = rng.choice([b"\xff", b"\x00", None])
        for i in range(pos, min(len(data), pos + n)):
            data[i] = fill[0] if fill else rng.randrange(256)
    elif kind == "truncate":
        data = data[: rng.randrange(max(1, len(data)))]
    elif kind == "append":
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 100)))
    elif kind == "zero-range" and data:
        a = rng.randrange(len(data))
        b = rng.randrange(a, len(data) + 1)
        data[a:b] = bytes(b - a)
    else:
        data = bytearray()
        kind = "empty"
    with open(path, "wb") as fh:
        fh.write(data)
    return kind


def manifest_structural(rng: random.Random, store: str) -> str:
    for _attempt in range(10):
        name, obj = load_tree(store)
        paths = tree_paths(obj)
        keys = ("shape", "chunk_shape", "slot", "segments", "fill_value", "s", "v", "t", "k", "dims", "dir", "stats")
        interesting = [
            p for p in paths if (p and p[-1] in keys) or (len(p) >= 5 and p[0] == "arrays" and p[2] == "segments")
        ]
        path = rng.choice(interesting if interesting and rng.random() < 0.7 else paths)
        value = json.loads(json.dumps(rng.choice(HOSTILE_JSON)))  # a fresh copy
        set_path(obj, path, value)
        try:
            save_tree(store, name, obj)
        except OverflowError:  # msgpack has no integers beyond 64 bits: draw again
            continue
        return f"set {list(path)} = {str(value)[:40]}"
    raise AssertionError("no encodable forgery found")


def manifest_bytes_special(rng: random.Random, store: str) -> str:
    name = manifest_name(store)
    fmt, comp = parse_manifest_filename(name)
    kind = rng.choice(["depth-bomb", "second-manifest", "delete", "huge-blosc-header"])
    target = os.path.join(store, name)
    if kind == "depth-bomb":
        payload = ("[" * 100000 + "]" * 100000).encode() if fmt == "json" else b"\x91" * 100000 + b"\xc0"
        if comp != "none":
            codec = blosc2.Codec.ZSTD if comp == "zstd" else blosc2.Codec.LZ4
            payload = bytes(blosc2.compress2(payload, codec=codec, typesize=1))
        with open(target, "wb") as fh:
            fh.write(payload)
    elif kind == "second-manifest":
        other = "atlas.msgpack" if fmt == "json" else "atlas.json"
        shutil.copy(target, os.path.join(store, other))
    elif kind == "delete":
        os.remove(target)
    else:
        with open(target, "rb") as fh:
            data = bytearray(fh.read())
        if comp == "none" or len(data) < 32:
            data = bytearray(b"\x05\x01\x85\x01") + struct.pack("<III", 2**31 - 1, 2**20, len(data) + 16) + data
        else:
            struct.pack_into("<I", data, 4, rng.choice([2**31 - 1, 2**31 - 4096, 2**30]))
        with open(target, "wb") as fh:
            fh.write(data)
    return kind


def rewrite_index(store: str, name: str, obj: Any, rel: str, entry: list, table: np.ndarray, data: bytearray) -> None:
    """Put a (forged) record table back with consistent checksums everywhere."""
    index_offset, index_length = entry[2], entry[3]
    raw = table.tobytes()
    assert len(raw) == index_length
    data[index_offset : index_offset + index_length] = raw
    digest = checksum(raw)
    data[-FOOTER_SIZE:] = struct.pack("<QQQ8s", index_offset, index_length, digest, b"ATLASEND")
    entry[4] = digest
    with open(os.path.join(store, rel), "wb") as fh:
        fh.write(data)
    save_tree(store, name, obj)


def segment_forgery(rng: random.Random, store: str) -> str:
    name, obj = load_tree(store)
    _array, rel, entry = rng.choice(segments_of(obj))
    with open(os.path.join(store, rel), "rb") as fh:
        data = bytearray(fh.read())
    table = np.frombuffer(bytes(data[entry[2] : entry[2] + entry[3]]), RECORD_DTYPE).copy()
    i = rng.randrange(table.shape[0])
    kind = rng.choice(["record", "record", "blosc-header", "string-chunk", "footer", "manifest-entry"])
    if kind == "record":
        fld = rng.choice(["offset", "nbytes", "raw_nbytes", "codec", "flags", "slot", "chunk", "null_count"])
        value = rng.choice([*HOSTILE_INTS, int(table[fld][i]) + 1, max(0, int(table[fld][i]) - 1)])
        if fld in ("codec", "flags"):
            value &= 0xFF
        table[fld][i] = value
        rewrite_index(store, name, obj, rel, entry, table, data)
        return f"record {i}.{fld} = {value} (checksums recomputed)"
    if kind == "blosc-header":
        comp = [j for j in range(table.shape[0]) if table["codec"][j] != 0]
        if not comp:
            return segment_forgery(rng, store)
        i = rng.choice(comp)
        off, n = int(table["offset"][i]), int(table["nbytes"][i])
        field = rng.choice([(4, "nbytes"), (8, "blocksize"), (12, "cbytes")])
        value = rng.choice([2**31 - 1, 2**31 - 64, 2**30, 2**24, 0, 1, n + 1]) & 0xFFFFFFFF
        struct.pack_into("<I", data, off + field[0], value)
        if field[1] == "nbytes":
            table["raw_nbytes"][i] = value  # keep the header/record cross-check satisfied
        table["checksum"][i] = checksum(bytes(data[off : off + n]))
        rewrite_index(store, name, obj, rel, entry, table, data)
        return f"blosc header {field[1]} of record {i} = {value} (checksums recomputed)"
    if kind == "string-chunk":
        raw = [j for j in range(table.shape[0]) if table["codec"][j] == 0 and int(table["nbytes"][j]) >= 16]
        if not raw:
            return segment_forgery(rng, store)
        i = rng.choice(raw)
        off, n = int(table["offset"][i]), int(table["nbytes"][i])
        pos = off + 8 * rng.randrange(max(1, min(n // 8, 6)))
        value = rng.choice(HOSTILE_INTS)
        struct.pack_into("<Q", data, pos, value)
        table["checksum"][i] = checksum(bytes(data[off : off + n]))
        rewrite_index(store, name, obj, rel, entry, table, data)
        return f"u64 at payload +{pos - off} of raw record {i} = {value} (checksums recomputed)"
    if kind == "footer":
        fields = list(struct.unpack("<QQQ8s", bytes(data[-FOOTER_SIZE:])))
        k = rng.randrange(3)
        fields[k] = rng.choice(HOSTILE_INTS)
        data[-FOOTER_SIZE:] = struct.pack("<QQQ8s", *fields)
        with open(os.path.join(store, rel), "wb") as fh:
            fh.write(data)
        return f"footer field {k} = {fields[k]}"
    # manifest entry of the segment: size / index offset / index length / records
    if rng.random() < 0.3:  # a consistent pair: the file "is" huge and so is its index
        entry[1] = rng.choice([2**40, 2**62, 2**63 - 1, 2**64 - 1])
        entry[3] = rng.choice([2**31, 2**33, entry[1] - entry[2]])
        save_tree(store, name, obj)
        return f"manifest segment entry size = {entry[1]}, index length = {entry[3]}"
    k = rng.choice([1, 2, 3, 5])
    entry[k] = rng.choice([*HOSTILE_INTS, entry[k] + 1, max(0, entry[k] - 1)])
    save_tree(store, name, obj)
    return f"manifest segment entry field {k} = {entry[k]}"


def segment_file_op(rng: random.Random, store: str) -> str:
    _name, obj = load_tree(store)
    segs = segments_of(obj)
    _a, rel, _e = rng.choice(segs)
    kind = rng.choice(["delete", "swap"])
    if kind == "delete" or len(segs) < 2:
        os.remove(os.path.join(store, rel))
        return "delete"
    _b, other, _f = rng.choice([s for s in segs if s[1] != rel])
    shutil.copy(os.path.join(store, other), os.path.join(store, rel))
    return "replaced by another segment"


def mutate(rng: random.Random, store: str) -> tuple[str, str]:
    """Apply one mutation; returns ``(target, description)``."""
    r = rng.random()
    if r < 0.15:
        return "manifest", "raw " + raw_mutation(rng, os.path.join(store, manifest_name(store)))
    if r < 0.30:
        return "manifest", "forged " + manifest_structural(rng, store)
    if r < 0.35:
        return "manifest", "special " + manifest_bytes_special(rng, store)
    _name, obj = load_tree(store)
    if r < 0.65:
        _a, rel, _e = rng.choice(segments_of(obj))
        return "segment", f"raw {raw_mutation(rng, os.path.join(store, rel))} {rel}"
    if r < 0.95:
        # checksums are recomputed: a forger can make any data "valid", so only safety is checked
        return "segment-forged", segment_forgery(rng, store)
    return "segment", "file " + segment_file_op(rng, store)


# -- reading everything ------------------------------------------------------------------------------


class Bad(Exception):
    """A rule was broken (carries the description)."""


def read_everything(store_dir: str) -> tuple[dict[str, bytes], list[str], list[dict], list[str] | None]:
    """``({call: encoded result}, [refusals], [violations], verify() result or None)``.

    ``"open"`` is in the refusals or violations when the store did not open.
    """
    results: dict[str, bytes] = {}
    refused: list[str] = []
    bad: list[dict] = []

    def call(key: str, fn, *args, keep: bool = True, **kwargs):
        try:
            value = fn(*args, **kwargs)
        except AtlasError as exc:
            refused.append(f"{key}: {type(exc).__name__}: {str(exc)[:200]}")
            return None
        except BaseException as exc:  # this is what we are looking for
            if isinstance(exc, KeyboardInterrupt):
                raise
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/atlas/" in f.filename]
            where = f"{frames[-1].filename.split('/atlas/')[-1]}:{frames[-1].lineno}" if frames else "?"
            bad.append(
                {
                    "call": key,
                    "sig": f"{type(exc).__name__} at {where}",
                    "text": f"{type(exc).__name__}: {str(exc)[:300]}\n{traceback.format_exc()[-2500:]}",
                }
            )
            return None
        if keep:
            out: list[bytes] = []
            _enc(value, out)
            results[key] = b"".join(out)
        return value

    store = call("open", atlas.Atlas.open, store_dir, mode="r", keep=False)
    if store is None:
        return results, refused, bad, None
    names = call("list_datasets", store.list_datasets) or []
    call("list_arrays", store.list_arrays)
    holders: dict[str, list[tuple[str, list[int]]]] = {}
    for ds_name in names:
        ds = call(f"open_dataset {ds_name}", store.open_dataset, ds_name, keep=False)
        if ds is None:
            continue
        call(f"{ds_name}.attributes", ds.attributes)
        for array in call(f"{ds_name}.list_arrays", ds.list_arrays) or []:
            meta = call(f"{ds_name}.{array}.meta", ds.array_meta, array)
            call(f"{ds_name}.{array}.stats", ds.array_stats, array)
            call(f"{ds_name}.{array}.fill", ds.array_fill_value, array)
            if meta is None:
                continue
            shape = meta["shape"]
            holders.setdefault(array, []).append((ds_name, shape))
            if int(np.prod(shape, dtype=object)) <= MAX_FULL_READ:
                call(f"{ds_name}.{array}.read", ds.read_array, array)
            else:
                window = [min(s, WINDOW) for s in shape]
                call(f"{ds_name}.{array}.read-window", ds.read_array, array, [0] * len(shape), window)
            if shape and shape[0] > 1:
                tail_start = [shape[0] - 1] + [0] * (len(shape) - 1)
                tail_shape = [1] + [min(s, WINDOW) for s in shape[1:]]
                call(f"{ds_name}.{array}.read-tail", ds.read_array, array, tail_start, tail_shape)
    for array, held in sorted(holders.items()):
        dsnames = [n for n, _ in held]
        if all(int(np.prod(shape, dtype=object)) <= MAX_FULL_READ for _, shape in held):
            call(f"across {array}", store.read_array_across, array, dsnames)
        else:
            rank = len(held[0][1])
            call(f"across-window {array}", store.read_array_across, array, dsnames, [0] * rank, [1] * rank)
    problems = call("verify", store.verify, keep=False)
    return results, refused, bad, problems


def main(argv: list[str]) -> int:
    faulthandler.enable()  # a segfault prints the Python stack of the call that crashed
    template, workdir, seed, first, count, mem_mb, out = argv
    seed, first, count, mem_mb = int(seed), int(first), int(count), int(mem_mb)
    reference, ref_refused, ref_bad, ref_problems = read_everything(template)
    if ref_refused or ref_bad or ref_problems:
        raise SystemExit(f"the pristine template does not read cleanly: {ref_refused} {ref_bad}")
    with open("/proc/self/status") as fh:
        vm = int(fh.read().split("VmSize:")[1].split()[0]) * 1024
    limit = vm + mem_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    with open(out, "a", encoding="utf-8") as log:
        for trial in range(first, first + count):
            rng = random.Random(seed * 1_000_003 + trial)
            work = os.path.join(workdir, "trial")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(template, work)
            log.write(json.dumps({"started": trial, "phase": "mutate"}) + "\n")
            log.flush()
            target, what = mutate(rng, work)
            log.write(json.dumps({"started": trial, "phase": "read", "target": target, "mutation": what}) + "\n")
            log.flush()
            results, refused, bad, problems = read_everything(work)
            wrong = []
            if target == "segment":  # damaged segment bytes must never come back as data
                wrong = [k for k, v in results.items() if reference.get(k, v) != v]
            record = {
                "trial": trial,
                "target": target,
                "mutation": what,
                "refused": len(refused),
                "first_refusal": refused[0] if refused else None,
                "opened": not any(x.startswith("open:") for x in refused) and not any(b["call"] == "open" for b in bad),
                "verify_problems": None if problems is None else len(problems),
                "bad": bad,
                "wrong": wrong,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
