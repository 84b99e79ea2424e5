"""The child side of `start_process` (process.py, which describes the protocol): `python -m
localdev.chartmogul_emulator.child` reads its `EmulatorOptions` as one JSON line on stdin, serves, answers its URL
on stdout and stops when stdin reaches end of file (its parent stopped it or died), on SIGTERM, or when its parent
pid changes (localdev/child_process.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys

from localdev.chartmogul_emulator.app import create_server
from localdev.chartmogul_emulator.process import options_from_json
from localdev.child_process import ready_channel, wait_while_parent_lives


def serve_until_parent_goes() -> int:
    parent = os.getppid()
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    tell_parent = ready_channel()  # a stray print must not fill a pipe no one reads
    try:
        options = options_from_json(sys.stdin.buffer.readline())
        server, emulator = create_server(options)
        base_url = server.start()
    except (ValueError, TypeError, OSError, sqlite3.Error) as error:
        tell_parent({"error": f"{type(error).__name__}: {error}"})
        return 1
    emulator.start_background()
    tell_parent({"base_url": base_url, "ca_cert": str(server.ca_cert_path) if server.ca_cert_path else None})
    try:
        wait_while_parent_lives(parent, stopping=lambda: bool(stopping))
    finally:
        emulator.stop_background()
        server.stop()
        emulator.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve_until_parent_goes())
