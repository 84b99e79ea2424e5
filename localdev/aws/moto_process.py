"""moto's server in a child OS process: the local runtime's "process" backend.

In the "in-process" and "server" backends moto runs in the Python process that also runs the emulators and every
Lambda instance's thread, so moto's work competes with theirs for one interpreter (one thread at a time): a
benchmark then measures that interpreter more than the pipeline. Real AWS answers from its own servers; here moto
answers from its own process, on its own core.

    with start_moto_process() as moto:       # the child has bound 127.0.0.1 and reported its port
        boto3.client("sqs", endpoint_url=moto.endpoint_url, ...)

The child (`python -m localdev.aws.moto_process`) installs `moto_fixes` (the same patches the other backends get),
starts moto's `ThreadedMotoServer` (moto docs, server_mode.rst) on 127.0.0.1 port 0, and writes one line to
stdout, `{"port": ..., "moto_fixes": true}`, once its socket listens. It then serves until its stdin reaches end of
file, which happens when the parent closes the pipe (`stop`) and also when the parent dies, whatever kills it (the
kernel closes a dead process's descriptors); it also checks every half second that its parent is still the process
that started it (a backstop if another process held the pipe open). So no moto child outlives its parent.
A new child holds no state: every stack starts from a clean account, as the server backend's reset gives.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from localdev.aws.template import REPO_ROOT

# Importing moto and its server takes a second or two on an idle machine; a shared one can be slower.
DEFAULT_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
_PARENT_CHECK_INTERVAL_S = 0.5


class MotoProcessError(RuntimeError):
    """The moto child did not start (or did not say so in time)."""


@dataclass(frozen=True)
class MotoProcess:
    pid: int
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def start_moto_process(ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> Iterator[MotoProcess]:
    """Start moto's server in a child process and yield it once it listens; stop it (and wait for it) on exit.

    Raises MotoProcessError, with a one-line message, if the child exits or stays silent for `ready_timeout_s`
    before reporting its port; the child is then stopped too.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "localdev.aws.moto_process", "--parent-pid", str(os.getpid())],
        cwd=REPO_ROOT,  # `-m localdev...` imports from the repository, wherever the caller runs
        stdin=subprocess.PIPE,  # the child's lifeline: end of file on it means "stop"
        stdout=subprocess.PIPE,  # one line: the port
        stderr=None,  # the child's errors show where the parent's do
    )
    try:
        ready = _read_ready_line(child, ready_timeout_s)
    except BaseException:
        _stop(child, kill=True)  # it serves nothing yet: no need to let it finish starting
        raise
    try:
        yield MotoProcess(pid=child.pid, port=int(ready["port"]))
    finally:
        _stop(child)


def _read_ready_line(child: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    assert child.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):  # bounded by the deadline
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MotoProcessError(f"moto's server process (pid {child.pid}) did not report its port in {timeout_s} s")
        readable, _, _ = select.select([child.stdout], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(child.stdout.fileno(), 4096)
        if not chunk:  # the child closed stdout: it exited (or is exiting) before it was ready
            code = child.wait(timeout=_STOP_TIMEOUT_S)
            raise MotoProcessError(
                f"moto's server process exited with code {code} before it was ready (its error is on stderr above)"
            )
        line += chunk
    try:
        ready: dict[str, Any] = json.loads(line)
        int(ready["port"])
    except (ValueError, KeyError, TypeError):
        raise MotoProcessError(f"moto's server process said {line[:200]!r} instead of its port") from None
    if ready.get("moto_fixes") is not True:
        raise MotoProcessError("moto's server process started without localdev/aws/moto_fixes.py installed")
    return ready


def _stop(child: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if kill:
        child.kill()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()  # end of file on the child's stdin: it stops its server and exits
    try:
        child.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=_STOP_TIMEOUT_S)


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a running process has used, from /proc (Linux): proc(5), /proc/pid/stat fields
    14 (utime) and 15 (stime), in clock ticks. For figures that count moto's work when it is another process's."""
    return sum(_stat_fields(pid)[11:13]) / os.sysconf("SC_CLK_TCK")


def has_ended(pid: int) -> bool:
    """Whether the process has exited: gone, or a zombie (its parent has not reaped it yet)."""
    try:
        return _stat_fields(pid)[0] == -1
    except FileNotFoundError:
        return True


def child_processes(parent_pid: int | None = None) -> list[int]:
    """The child processes of `parent_pid` (this process by default), zombies included, from /proc (Linux; none
    elsewhere)."""
    parent = os.getpid() if parent_pid is None else parent_pid
    children = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                if _stat_fields(int(entry))[1] == parent:
                    children.append(int(entry))
            except OSError:
                continue  # it ended meanwhile
    return children


def _stat_fields(pid: int) -> list[int]:
    """/proc/pid/stat after "(comm)" (which may hold spaces), numbers from field 4 (ppid) on; field 3, the state
    letter, is -1 for a zombie (ended, not yet reaped) and 0 otherwise."""
    with open(f"/proc/{pid}/stat") as stat:
        state, *numbers = stat.read().rsplit(")", 1)[1].split()
    return [-1 if state == "Z" else 0, *(int(n) for n in numbers)]


# ---------------------------------------------------------------------------------------------- the child
def _serve(parent_pid: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when moto stops (it closes the
    # pipe on its way out), so an interrupt does not kill moto under the parent's cleanup.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import logging

    from moto.server import ThreadedMotoServer

    from localdev.aws import moto_fixes

    moto_fixes.install()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the socket is bound and listening
    _, port = server.get_host_and_port()
    ready = json.dumps({"port": port, "moto_fixes": moto_fixes.installed()})
    os.write(sys.stdout.fileno(), f"{ready}\n".encode())
    # Nothing else goes to the pipe the parent stopped reading: later prints (moto's, if any) go to stderr.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    parent_gone = threading.Event()
    threading.Thread(target=_watch_parent, args=(parent_pid, parent_gone), daemon=True).start()
    while not parent_gone.is_set():  # until end of file on stdin or the parent is gone
        readable, _, _ = select.select([sys.stdin], [], [], _PARENT_CHECK_INTERVAL_S)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break
    # moto's state lives only in this process, so there is nothing to save or flush: exit at once (the kernel
    # closes the socket) rather than wait for the server's shutdown poll and the interpreter's teardown.
    os._exit(0)


def _watch_parent(parent_pid: int, parent_gone: threading.Event) -> None:
    while os.getppid() == parent_pid:  # a dead parent's child is adopted by another process
        time.sleep(_PARENT_CHECK_INTERVAL_S)
    parent_gone.set()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="moto's server for the local runtime (started by its parent)")
    parser.add_argument("--parent-pid", type=int, required=True)
    _serve(parser.parse_args().parent_pid)
