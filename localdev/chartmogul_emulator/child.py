"""The child side of `start_process` (process.py, which describes the protocol): `python -m
localdev.chartmogul_emulator.child` reads its `EmulatorOptions` as one JSON line on stdin, serves, answers its URL
on stdout and stops when stdin reaches end of file (its parent stopped it or died), on SIGTERM, or when its parent
pid changes."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import sys
from typing import Any

from localdev.chartmogul_emulator.app import create_server
from localdev.chartmogul_emulator.process import options_from_json

WATCH_INTERVAL_S = 0.5  # how often the child looks at its parent pid and its stop flag


def serve_until_parent_goes() -> int:
    parent = os.getppid()
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    ready_channel = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not fill a pipe no one reads

    def tell_parent(message: dict[str, Any]) -> None:
        os.write(ready_channel, (json.dumps(message) + "\n").encode())
        os.close(ready_channel)

    try:
        options = options_from_json(sys.stdin.buffer.readline())
        server, emulator = create_server(options)
        base_url = server.start()
    except (ValueError, TypeError, OSError, sqlite3.Error) as error:
        tell_parent({"error": f"{type(error).__name__}: {error}"})
        return 1
    emulator.start_background()
    tell_parent({"base_url": base_url, "ca_cert": str(server.ca_cert_path) if server.ca_cert_path else None})
    stdin = sys.stdin.buffer.fileno()
    try:
        while not stopping and os.getppid() == parent:  # bounded by the parent: its death ends the loop
            readable, _, _ = select.select([stdin], [], [], WATCH_INTERVAL_S)
            if readable and not os.read(stdin, 4096):
                break  # end of file: stop() closed the pipe, or the parent has gone
    finally:
        emulator.stop_background()
        server.stop()
        emulator.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve_until_parent_goes())
