"""A local server in a child OS process that never outlives its parent: the protocol the ChartMogul emulator's process
(localdev/chartmogul_emulator/process.py) and moto's (localdev/aws/moto_process.py) share.

- The parent starts the child with pipes on its stdin and stdout; `read_ready_line` waits, with a bound, for the one
  JSON line the child writes once it listens (its port or URL), and `stop_child` closes the child's stdin, waits for
  it, and kills it after a bound.
- The child sends that line through `ready_channel()` (its stdout is moved aside first: a stray print goes to stderr,
  not into a pipe no one reads), serves, and `wait_while_parent_lives` returns when its stdin reaches end of file,
  which happens when the parent closes it and also when the parent dies, however it dies (the kernel closes a dead
  process's descriptors); or when its parent pid is no longer the one that started it (a backstop for a pipe another
  process still holds, e.g. a fork of the parent). So no child outlives its parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

STOP_TIMEOUT_S = 10.0  # from closing the child's stdin to its exit, before SIGKILL
WATCH_INTERVAL_S = 0.5  # how often a child looks at its parent pid (and its stop flag)


# ---------------------------------------------------------------------------------------------- the parent's side
def read_ready_line(
    process: subprocess.Popen[bytes], *, timeout_s: float, what: str, error: type[Exception]
) -> dict[str, Any]:
    """The child's ready line, a JSON object; its stdout is closed after it. Raises `error` with a one-line message
    naming `what` if the child exits first, stays silent for `timeout_s`, or writes something else."""
    assert process.stdout is not None
    stdout = process.stdout
    received = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in received:  # bounded by the deadline
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error(f"{what} (pid {process.pid}) was not ready within {timeout_s:g} s")
        readable, _, _ = select.select([stdout], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(stdout.fileno(), 4096)
        if not chunk:  # end of file: the child exited (or is exiting) before it was ready
            code = process.wait(timeout=STOP_TIMEOUT_S)
            raise error(f"{what} exited with code {code} before it was ready (its error output is above)")
        received += chunk
    stdout.close()
    line = received.split(b"\n", 1)[0]
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise error(f"{what} said {line[:200]!r} instead of its ready line")
    return answer


def stop_child(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """Close the child's stdin (it stops and exits) and wait for it; SIGKILL if it has not exited in
    `STOP_TIMEOUT_S`, or at once with `kill` (a child that is not serving yet). Safe to call twice."""
    if kill and process.poll() is None:
        process.kill()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None and not pipe.closed:
            with contextlib.suppress(BrokenPipeError):  # it has exited already
                pipe.close()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


# ---------------------------------------------------------------------------------------------- the child's side
def process_figures() -> dict[str, Any]:
    """`{"pid": ..., "cpu_seconds": ...}` of this process (user and system, all its threads): what an emulator's
    `GET /_admin/process` answers, so a benchmark can add a child's CPU to its own."""
    return {"pid": os.getpid(), "cpu_seconds": time.process_time()}


def ready_channel() -> Callable[[dict[str, Any]], None]:
    """Move stdout aside (later output goes to stderr) and return what sends the ready line, once."""
    channel = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def tell_parent(message: dict[str, Any]) -> None:
        os.write(channel, (json.dumps(message) + "\n").encode())
        os.close(channel)

    return tell_parent


def wait_while_parent_lives(parent_pid: int, stopping: Callable[[], bool] = lambda: False) -> None:
    """Return when stdin reaches end of file, the process's parent is no longer `parent_pid`, or `stopping()`."""
    stdin = sys.stdin.buffer.fileno()
    while not stopping() and os.getppid() == parent_pid:  # bounded by the parent: its death ends the loop
        readable, _, _ = select.select([stdin], [], [], WATCH_INTERVAL_S)
        if readable and not os.read(stdin, 4096):
            return  # end of file: the parent closed the pipe, or has gone


def admin_opener() -> urllib.request.OpenerDirector:
    """An opener for a child's `/_admin` endpoints: loopback, so no proxy from the environment applies."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def admin_call(
    opener: urllib.request.OpenerDirector, url: str, method: str, body: dict[str, Any] | None, timeout_s: float
) -> Any:
    """One JSON request to a child's admin endpoint; its JSON answer (None for an empty body). Raises what urllib
    raises (`HTTPError` for an answer other than 2xx, `OSError` for no answer): each handle words its own error."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with opener.open(request, timeout=timeout_s) as response:
        payload = response.read()
    return json.loads(payload) if payload else None
