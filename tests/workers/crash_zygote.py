"""A fork server for the crash tests: import atlas once, fork a writer per command.

Starting Python with numba and atlas costs about a second; forking this warmed-up
process costs milliseconds, so the crash tests can afford hundreds of SIGKILLs.  A
forked writer is a real, separate process: the test kills it with SIGKILL exactly as
it would kill a freshly started one (test_crash.py also runs a few cycles with
freshly exec'd writers).

Protocol (one line per command on stdin, one line per answer on stdout):

``spawn STORE ORACLE SEED MAX_PENDING``  ->  ``pid N``
``wait N``                               ->  ``status N RAW_WAIT_STATUS``
``quit``
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback

import crash_writer


def warm_up() -> None:
    """Run a few generations on a scratch store so every kernel is compiled before forking."""
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "s")
        crash_writer.atlas.Atlas.create(store).close()
        oracle = os.path.join(tmp, "oracle")
        crash_writer.run(store, oracle, 12345, 2048, 2 * crash_writer.COMPACT_EVERY + 1)


def child(args: list[str]) -> None:
    code = 1
    try:
        sys.stdin.close()
        code = crash_writer.main(args)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main() -> int:
    warm_up()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "spawn":
            pid = os.fork()
            if pid == 0:
                child(args)
            print(f"pid {pid}", flush=True)
        elif cmd == "wait":
            pid = int(args[0])
            _, status = os.waitpid(pid, 0)
            print(f"status {pid} {status}", flush=True)
        elif cmd == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
