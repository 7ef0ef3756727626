"""The storage engine: chunks of many datasets in shared segment files (no API, no manifest writes).

* :mod:`~atlas.engine.planner`: selections to chunk plans (pure numpy).
* :mod:`~atlas.engine.jit`: numba on demand (kernels declared at import, compiled on first call).
* :mod:`~atlas.engine.kernels`: numba kernels (copies, fills, stats, XXH64); imports only :mod:`~atlas.engine.jit`.
* :mod:`~atlas.engine.codecs`: chunk codecs (zstd, lz4, none), string encoding, checksums. A new codec goes here.
* :mod:`~atlas.engine.rowhash`: the checksums of many short payloads of one length at once (numpy XXH64).
* :mod:`~atlas.engine.chunks`: one chunk's stats, encoding and decoding.
* :mod:`~atlas.engine.segment`: the ``.af`` segment file layout (writer, index, footer).
* :mod:`~atlas.engine.segment_io`: segment bytes through a backend (memory maps, coalesced ranges).
* :mod:`~atlas.engine.family`: one array name's family: reads, pending writes, stats.
* :mod:`~atlas.engine.family_index`: a family's merged chunk index (newest record per slot and chunk).
* :mod:`~atlas.engine.staged`: staged (unflushed) chunks, their stats, their encoding into a segment
  (many small one-chunk arrays stacked: stats in one pass, raw payloads laid out as one block).
* :mod:`~atlas.engine.pieces`: the piece table of a bulk read (geometry and payloads).
* :mod:`~atlas.engine.gather`: the bulk gather across datasets. A faster gather goes here.
* :mod:`~atlas.engine.libblosc2`: the libblosc2 bridge (ctypes and jitted calls into its C API, loaded on first use).
* :mod:`~atlas.engine.pools`: the process-wide thread pools.
"""
