"""The ChartMogul emulator in an OS process of its own (`start_process`), a drop-in for `start` where a caller
needs only HTTP: the API, request counts, state, reset, the clock and faults.

Why: in-process, the emulator's request handling and bulk-import worker share one interpreter (and its GIL) with
whatever calls it, so a benchmark of the local pipeline would measure that interpreter, not the pipeline; the
real ChartMogul runs on its own servers.

How (parent ↔ child):
- the parent runs `python -m localdev.chartmogul_emulator.child` (child.py) and writes the `EmulatorOptions` as one JSON
  line on its stdin (every field, so the child is configured exactly as `start(options)` would be);
- the child binds (port 0: a free one), starts its bulk worker and answers one JSON line on stdout:
  `{"base_url": ..., "ca_cert": ...}`, or `{"error": ...}` and exit 1; the parent waits at most
  `READY_TIMEOUT_S`;
- the child stops when its stdin reaches end of file: `stop()` closes it, and so does the kernel when the parent
  dies, however it dies (SIGKILL included). It also stops on SIGTERM and when its parent pid changes (a parent
  that forked keeps the pipe open in the fork). So no child outlives its parent. (The ready line, the stop and
  the child's watch are localdev/child_process.py, which moto's process uses too.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn, Self

from localdev.chartmogul_emulator.options import EmulatorOptions, parse_instant
from localdev.chartmogul_emulator.running import EmulatorHandle
from localdev.child_process import admin_call, admin_opener, read_ready_line, stop_child

READY_TIMEOUT_S = 30.0  # import and bind; generous for a loaded 2-core machine
ADMIN_TIMEOUT_S = 30.0  # one admin request (`/_admin/state` of a large account takes a while)


class EmulatorProcessError(RuntimeError):
    """The emulator process did not start, or did not answer an admin request."""


# ---- options across the process boundary -----------------------------------------------------------------------


def options_to_json(options: EmulatorOptions) -> str:
    """Every field of `options` as one JSON line; a field JSON cannot carry raises TypeError (so a new field of a
    new type is noticed, not dropped)."""
    fields = {field.name: getattr(options, field.name) for field in dataclasses.fields(EmulatorOptions)}
    if isinstance(fields["now"], dt.datetime):
        fields["now"] = fields["now"].isoformat()
    return json.dumps(fields)


def options_from_json(text: str | bytes) -> EmulatorOptions:
    fields = json.loads(text)
    if fields.get("now") is not None:
        fields["now"] = parse_instant(fields["now"])
    return EmulatorOptions(**fields)


class _StartedOptions(EmulatorOptions):
    """The options a child was started with, for reading (`api_key`, `rates`, ...). Assigning a field raises: the
    child took its copy at start, and a change here would silently not reach it."""

    _sealed = False

    def seal(self) -> _StartedOptions:
        object.__setattr__(self, "_sealed", True)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        if self._sealed:
            raise AttributeError(
                f"options.{name} cannot change: the ChartMogul emulator runs in its own process and took its options "
                "at start (use set_clock(), set_faults() or its /_admin endpoints)"
            )
        super().__setattr__(name, value)


# ---- the parent's handle -----------------------------------------------------------------------------------------


class ProcessEmulator(EmulatorHandle):
    """A ChartMogul emulator in a child process; what `RunningEmulator` offers over HTTP, the rest refused with a
    one-line error. Stop it with `stop()` or by leaving its `with` block."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = _StartedOptions(**dataclasses.asdict(options)).seal()
        self._line = options_to_json(options) + "\n"
        self._process: subprocess.Popen[bytes] | None = None
        self._base_url: str | None = None
        self.ca_cert_path: Path | None = None
        # Admin requests go straight to loopback, whatever proxy the environment names.
        self._opener = admin_opener()

    def start(self) -> Self:
        if self._process is not None:
            return self
        # The child imports the very code the parent runs (the emulator uses chartmogul_sync's MRR rules too).
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "localdev.chartmogul_emulator.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # the ready line only; the child sends the rest of its output to stderr
            env=environment,
        )
        try:
            assert self._process.stdin is not None
            self._process.stdin.write(self._line.encode())
            self._process.stdin.flush()
            ready = self._read_ready_line()
        except BaseException:
            self._kill()
            raise
        if "error" in ready:
            self._kill()
            raise EmulatorProcessError(f"the ChartMogul emulator process did not start: {ready['error']}")
        self._base_url = str(ready["base_url"])
        self.ca_cert_path = Path(ready["ca_cert"]) if ready.get("ca_cert") else None
        return self

    def _read_ready_line(self) -> dict[str, Any]:
        assert self._process is not None
        return read_ready_line(
            self._process, timeout_s=READY_TIMEOUT_S, what="the ChartMogul emulator process", error=EmulatorProcessError
        )

    def stop(self) -> None:
        """Close the child's stdin (it stops serving and exits); SIGKILL if it has not exited in
        `child_process.STOP_TIMEOUT_S`. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            stop_child(process)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_child(process, kill=True)

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def base_url(self) -> str:
        self._running()
        assert self._base_url is not None
        return self._base_url

    # ---- what an in-process emulator offers, over HTTP ----------------------------------------------------------

    def request_counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = self._admin("GET", "/_admin/requests")
        return counts

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self._admin("GET", "/_admin/state")
        return state

    def reset(self) -> None:
        self._admin("POST", "/_admin/reset")

    def clock(self) -> dt.datetime | None:
        """The child's "now"; None: it follows the real clock."""
        now = self._admin("GET", "/_admin/clock")["now"]
        return parse_instant(now) if now is not None else None

    def set_clock(self, now: dt.datetime | None) -> None:
        self._admin("PUT", "/_admin/clock", {"now": now.isoformat() if now is not None else None})

    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        self._admin("PUT", "/_admin/faults", {"spec": spec, "seed": seed})

    def cpu_seconds(self) -> float:
        """CPU time the emulator's process has used so far (user and system, all its threads)."""
        return float(self._admin("GET", "/_admin/process")["cpu_seconds"])

    # ---- what only an in-process emulator has ----------------------------------------------------------------

    @property
    def server(self) -> NoReturn:
        self._in_process_only("server")

    @property
    def emulator(self) -> NoReturn:
        self._in_process_only("emulator")

    def _in_process_only(self, name: str) -> NoReturn:
        raise EmulatorProcessError(
            f"ProcessEmulator.{name}: the ChartMogul emulator runs in its own process; use request_counts(), "
            "state(), reset(), set_clock(), set_faults() or its /_admin endpoints, or start it in-process with "
            "chartmogul_emulator.start()"
        )

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise EmulatorProcessError("the ChartMogul emulator process is not running (not started, or stopped)")
        return self._process

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            return admin_call(self._opener, self.base_url + path, method, body, ADMIN_TIMEOUT_S)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise EmulatorProcessError(f"{method} {path}: the emulator answered {error.code}: {detail}") from None
        except OSError as error:
            exited = self._running().poll()
            state = f"it exited with code {exited}" if exited is not None else "it does not answer"
            raise EmulatorProcessError(f"{method} {path}: {state} ({error})") from None


def start_process(options: EmulatorOptions | None = None, **overrides: Any) -> ProcessEmulator:
    """Start the emulator in a child process on a free loopback port (unless `port` is given); `overrides` are
    `EmulatorOptions` fields, as for `start`."""
    chosen = dataclasses.replace(options or EmulatorOptions(), **overrides)
    return ProcessEmulator(chosen).start()
