"""moto's server in a child OS process: the local runtime's "process" backend.

In the "in-process" and "server" backends moto runs in the Python process that also runs the emulators and every
Lambda instance's thread, so moto's work competes with theirs for one interpreter (one thread at a time): a
benchmark then measures that interpreter more than the pipeline. Real AWS answers from its own servers; here moto
answers from its own process, on its own core.

    with start_moto_process() as moto:       # the child has bound 127.0.0.1 and reported its port
        boto3.client("sqs", endpoint_url=moto.endpoint_url, ...)

The child (`python -m localdev.aws.moto_process`) installs `moto_fixes` (the same patches the other backends get),
starts moto's `ThreadedMotoServer` (moto docs, server_mode.rst) on 127.0.0.1 port 0 and, once its socket listens,
writes one line to stdout, `{"port": ..., "moto_fixes": true}`. It stops as every local server child does
(localdev/child_process.py): when its stdin reaches end of file (the parent closed it, or died, however it died) or
its parent is no longer the process that started it. So no moto child outlives its parent. A new child holds no
state: every stack starts from a clean account, as the server backend's reset gives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from localdev.aws.template import REPO_ROOT
from localdev.child_process import read_ready_line, ready_channel, stop_child, wait_while_parent_lives

# Importing moto and its server takes a second or two on an idle machine; a shared one can be slower.
DEFAULT_READY_TIMEOUT_S = 60.0
_WHAT = "moto's server process"


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
        ready = read_ready_line(child, timeout_s=ready_timeout_s, what=_WHAT, error=MotoProcessError)
        if not isinstance(ready.get("port"), int):
            raise MotoProcessError(f"{_WHAT} said {ready!r} instead of its port")
        if ready.get("moto_fixes") is not True:
            raise MotoProcessError(f"{_WHAT} started without localdev/aws/moto_fixes.py installed")
    except BaseException:
        stop_child(child, kill=True)  # it serves nothing yet: no need to let it finish starting
        raise
    try:
        yield MotoProcess(pid=child.pid, port=ready["port"])
    finally:
        stop_child(child)


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
    tell_parent = ready_channel()
    import logging

    from moto.server import ThreadedMotoServer

    from localdev.aws import moto_fixes

    moto_fixes.install()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the socket is bound and listening
    _, port = server.get_host_and_port()
    tell_parent({"port": port, "moto_fixes": moto_fixes.installed()})
    wait_while_parent_lives(parent_pid)
    # moto's state lives only in this process, so there is nothing to save or flush: exit at once (the kernel
    # closes the socket) rather than wait for the server's shutdown poll and the interpreter's teardown.
    os._exit(0)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="moto's server for the local runtime (started by its parent)")
    parser.add_argument("--parent-pid", type=int, required=True)
    _serve(parser.parse_args().parent_pid)
