"""What every started Stripe emulator offers, serving from threads of this process (`RunningStripeEmulator`,
server.py) or from a process of its own (`ProcessStripeEmulator`, process.py): code that needs only this works
with either (the local pipeline, the demo, the benchmarks)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Protocol, Self


class ClockHandle(Protocol):
    """The emulated account's "now" (Unix seconds). Moving it runs what fell due meanwhile (renewals, retries,
    scheduled changes) with a generated account."""

    @property
    def now(self) -> int: ...

    def advance(self, *, seconds: int = 0, days: int = 0) -> int: ...

    def set(self, now: int) -> int: ...


class StripeEmulatorHandle(ABC):
    """A started Stripe emulator, wherever it runs. Stop it with `stop()` or by leaving its `with` block."""

    clock: ClockHandle

    @property
    @abstractmethod
    def base_url(self) -> str:
        """E.g. `http://127.0.0.1:40123`; the API lives under `/v1`."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving (safe to call twice)."""

    @abstractmethod
    def request_report(self) -> dict[str, Any]:
        """Counts by route and status, as `GET /_admin/requests` answers them (`routes`, `total`, ...)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The clock, the mode and the object counts, as `GET /_admin/state` answers them."""

    @property
    @abstractmethod
    def rate_limit(self) -> float | None:
        """The global limit in requests/s (None: none), as `GET /_admin/rate-limit` answers it."""

    @abstractmethod
    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        """Injected faults from now on (`None` or `""`: none), as `PUT /_admin/faults`."""

    @abstractmethod
    def set_latency(self, seconds: float) -> None:
        """Time added to every API request from now on, as `PUT /_admin/rate-limit` with `latency_ms`."""

    @abstractmethod
    def apply_step(self, step: dict[str, Any]) -> dict[str, Any]:
        """Apply one scenario step (localdev/scenarios/steps.py) at the clock; a step that does not fit raises
        ValueError with the reason. `POST /_admin/scenario-steps`."""

    @abstractmethod
    def ground_truth(self) -> dict[str, Any]:
        """What a correct import of the account yields now (`GET /_admin/ground-truth`)."""

    @abstractmethod
    def active_subscribers(self) -> list[str]:
        """Ids of the customers with a live subscription that is `active` at the clock, sorted
        (`GET /_admin/active-subscribers`): whom the demo's changes can touch."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
