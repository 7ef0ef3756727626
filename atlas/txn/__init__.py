"""The transaction layer: a handle's snapshot and pending changes, and the one commit path.

* :mod:`~atlas.txn.state`: :class:`WorkingState`, a committed snapshot plus pending changes.
* :mod:`~atlas.txn.session`: the lock, state and mode a handle shares with its views.
* :mod:`~atlas.txn.commit`: the ONE commit routine (flush and compaction), unknown outcomes settled.
* :mod:`~atlas.txn.compact`: compaction and the garbage it may delete.
* :mod:`~atlas.txn.verify`: checking every byte a manifest references.
* :mod:`~atlas.txn.leases`: leases over written, not yet committed segments.
* :mod:`~atlas.txn.fragments`: committing segments other processes wrote (``atlas.ingest``).
"""
