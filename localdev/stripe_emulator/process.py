"""The Stripe emulator in an OS process of its own (`start_process`), a drop-in for `start` where a caller needs
only HTTP: the API, request counts, faults, latency, the clock, scenario steps and the ground truth.

Why: in-process, the emulator renders its pages (100 objects, with expansions) in the interpreter of whatever calls
it, so a benchmark of the local pipeline measures that interpreter's one core (the GIL), not the pipeline; the real
Stripe runs on its own servers.

How (parent ↔ child), the protocol of localdev/child_process.py that the ChartMogul emulator's process uses too:
- the parent runs `python -m localdev.stripe_emulator.child` (child.py) and writes a `StripeProcessOptions` as one
  JSON line on its stdin: the generated account's parameters (`AccountSpec`: customers, months, seed, now) and
  `start()`'s options. The child generates the account itself (the same seed gives the same account, byte for
  byte), so nothing large crosses the pipe;
- the child generates, binds (port 0: a free one) and answers one JSON line on stdout, `{"base_url": ...}`, or
  `{"error": ...}` and exit 1; the parent waits at most `ready_timeout_s` (generation included);
- the child stops when its stdin reaches end of file: `stop()` closes it, and so does the kernel when the parent
  dies, however it dies (SIGKILL included); also on SIGTERM and when its parent pid changes.

What the in-process emulator offers as objects goes over the `/_admin` endpoints (README.md, "Admin endpoints");
`server`, `store`, `account`, `api` and event destinations stay in-process only and are refused with a one-line
error naming what to use instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Self

from localdev.child_process import admin_call, admin_opener, read_ready_line, stop_child
from localdev.stripe_emulator.handle import StripeEmulatorHandle

if TYPE_CHECKING:  # at run time imported where used: localdev.scenarios builds on this package
    from localdev.scenarios import Account, AccountSpec

READY_TIMEOUT_S = 30.0  # import and bind; generous for a loaded 2-core machine
GENERATION_S_PER_CUSTOMER_MONTH = 0.0005  # generation's bound on top (about 0.00004 s measured: 1,000 × 24 in 1 s)
ADMIN_TIMEOUT_S = 60.0  # one admin request (the ground truth of a large account takes a while)


class StripeProcessError(RuntimeError):
    """The emulator process did not start, or did not answer an admin request."""


class AdminError(StripeProcessError):
    """An admin request the child answered with an error status; `detail` is its message."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class StripeProcessOptions:
    """What the child needs: the account's parameters and `start()`'s options (its `seed` is `fault_seed` here, the
    account's being `account.seed`)."""

    account: AccountSpec
    mode: Literal["test", "live"] = "test"
    rate_limit: float | Literal["stripe"] | None = None
    endpoint_rate_limit: float | None = None
    faults: str | None = None
    fault_seed: int | None = 0
    host: str = "127.0.0.1"
    port: int = 0
    event_list_lag_s: int = 0
    restricted_keys: dict[str, list[str]] | None = None
    follow_wall_clock: bool = False
    latency_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> StripeProcessOptions:
        from localdev.scenarios import AccountSpec

        fields = json.loads(text)
        if not isinstance(fields, dict) or not isinstance(fields.get("account"), dict):
            raise ValueError("expected a JSON object with an `account` object (customers, months, seed, now)")
        return cls(**{**fields, "account": AccountSpec(**fields["account"])})

    @property
    def ready_timeout_s(self) -> float:
        return READY_TIMEOUT_S + self.account.customers * self.account.months * GENERATION_S_PER_CUSTOMER_MONTH


class ProcessClock:
    """The child's clock over `/_admin/clock`; moving it runs what fell due meanwhile, in the child."""

    def __init__(self, emulator: ProcessStripeEmulator) -> None:
        self._emulator = emulator

    @property
    def now(self) -> int:
        return int(self._emulator.admin("GET", "/_admin/clock")["now"])

    def advance(self, *, seconds: int = 0, days: int = 0) -> int:
        if seconds < 0 or days < 0:
            raise ValueError("the clock only moves forward")
        return self._move({"seconds": seconds, "days": days})

    def set(self, now: int) -> int:
        return self._move({"now": now})

    def _move(self, body: dict[str, int]) -> int:
        try:
            return int(self._emulator.admin("POST", "/_admin/clock", body)["now"])
        except AdminError as error:
            if error.status == 400:  # e.g. backwards: as in-process, a ValueError with the reason
                raise ValueError(error.detail) from None
            raise


class ProcessStripeEmulator(StripeEmulatorHandle):
    """A Stripe emulator serving a generated account from a child process; what `RunningStripeEmulator` offers over
    HTTP, the rest refused with a one-line error. Stop it with `stop()` or by leaving its `with` block."""

    def __init__(self, options: StripeProcessOptions) -> None:
        self.options = options
        self.mode = options.mode
        self.clock = ProcessClock(self)
        self._process: subprocess.Popen[bytes] | None = None
        self._base_url: str | None = None
        # Admin requests go straight to loopback, whatever proxy the environment names.
        self._opener = admin_opener()

    def start(self) -> Self:
        if self._process is not None:
            return self
        # The child imports the very code the parent runs (the scenarios use chartmogul_sync's models).
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "localdev.stripe_emulator.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # the ready line only; the child sends the rest of its output to stderr
            env=environment,
        )
        try:
            assert self._process.stdin is not None
            self._process.stdin.write((self.options.to_json() + "\n").encode())
            self._process.stdin.flush()
            ready = read_ready_line(
                self._process,
                timeout_s=self.options.ready_timeout_s,
                what="the Stripe emulator process",
                error=StripeProcessError,
            )
        except BaseException:
            self._kill()
            raise
        if "error" in ready:
            self._kill()
            raise StripeProcessError(f"the Stripe emulator process did not start: {ready['error']}")
        self._base_url = str(ready["base_url"])
        return self

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

    def request_report(self) -> dict[str, Any]:
        report: dict[str, Any] = self.admin("GET", "/_admin/requests")
        return report

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.admin("GET", "/_admin/state")
        return state

    def reset(self) -> None:
        """Regenerate the account from its parameters and clear the counters (`POST /_admin/reset`)."""
        self.admin("POST", "/_admin/reset")

    @property
    def rate_limit(self) -> float | None:
        rate = self.admin("GET", "/_admin/rate-limit")["rate"]
        return float(rate) if rate is not None else None

    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        self.admin("PUT", "/_admin/faults", {"spec": spec, "seed": seed})

    def set_latency(self, seconds: float) -> None:
        self.admin("PUT", "/_admin/rate-limit", {"latency_ms": seconds * 1000})

    def apply_step(self, step: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.admin("POST", "/_admin/scenario-steps", step)
        except AdminError as error:
            if error.status == 400:  # the step does not fit: as in-process, a ValueError with the reason
                raise ValueError(error.detail) from None
            raise
        return result

    def ground_truth(self) -> dict[str, Any]:
        truth: dict[str, Any] = self.admin("GET", "/_admin/ground-truth")
        return truth

    def active_subscribers(self) -> list[str]:
        return [str(customer) for customer in self.admin("GET", "/_admin/active-subscribers")["customers"]]

    def cpu_seconds(self) -> float:
        """CPU time the emulator's process has used so far (user and system, all its threads)."""
        return float(self.admin("GET", "/_admin/process")["cpu_seconds"])

    # ---- what only an in-process emulator has ----------------------------------------------------------------

    @property
    def server(self) -> NoReturn:
        self._in_process_only("server")

    @property
    def store(self) -> NoReturn:
        self._in_process_only("store")

    @property
    def account(self) -> NoReturn:
        self._in_process_only("account")

    @property
    def api(self) -> NoReturn:
        self._in_process_only("api")

    def add_event_destination(self, destination: Any) -> NoReturn:
        self._in_process_only("add_event_destination()")

    def _in_process_only(self, name: str) -> NoReturn:
        raise StripeProcessError(
            f"ProcessStripeEmulator.{name}: the Stripe emulator runs in its own process; use request_report(), "
            "state(), clock, apply_step(), ground_truth(), set_faults(), set_latency() or its /_admin endpoints, or "
            "start it in-process with stripe_emulator.start()"
        )

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise StripeProcessError("the Stripe emulator process is not running (not started, or stopped)")
        return self._process

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request to the child's `/_admin` surface; the JSON answer. Raises `StripeProcessError` (an
        `AdminError` with the status for an answer other than 2xx)."""
        try:
            return admin_call(self._opener, self.base_url + path, method, body, ADMIN_TIMEOUT_S)
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                detail = str(json.loads(text).get("error", text))
            except (ValueError, AttributeError):
                detail = text
            raise AdminError(
                f"{method} {path}: the emulator answered {error.code}: {detail[:300]}", error.code, detail
            ) from None
        except OSError as error:
            exited = self._running().poll()
            state = f"it exited with code {exited}" if exited is not None else "it does not answer"
            raise StripeProcessError(f"{method} {path}: {state} ({error})") from None


def start_process(
    account: Account | AccountSpec,
    *,
    mode: Literal["test", "live"] = "test",
    rate_limit: float | Literal["stripe"] | None = None,
    endpoint_rate_limit: float | None = None,
    faults: str | None = None,
    seed: int | None = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    event_list_lag_s: int = 0,
    restricted_keys: dict[str, frozenset[str]] | None = None,
    follow_wall_clock: bool = False,
    latency_s: float = 0.0,
) -> ProcessStripeEmulator:
    """Serve a generated account from a child process on a free loopback port (unless `port` is given): the options
    of `start()` (`seed` seeds the faults, as there), plus `latency_s` added to every API request. `account` is a
    generated account (only its `spec` is sent: the child regenerates it) or its `AccountSpec`."""
    from localdev.scenarios import Account, AccountSpec

    if not isinstance(account, Account | AccountSpec):
        raise TypeError("start_process serves a generated account (localdev.scenarios), not a bare store")
    spec = account.spec if isinstance(account, Account) else account
    options = StripeProcessOptions(
        account=spec,
        mode=mode,
        rate_limit=rate_limit,
        endpoint_rate_limit=endpoint_rate_limit,
        faults=faults,
        fault_seed=seed,
        host=host,
        port=port,
        event_list_lag_s=event_list_lag_s,
        restricted_keys={key: sorted(grants) for key, grants in restricted_keys.items()} if restricted_keys else None,
        follow_wall_clock=follow_wall_clock,
        latency_s=latency_s,
    )
    return ProcessStripeEmulator(options).start()
