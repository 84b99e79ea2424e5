"""Start the emulator in-process and hand out what a caller needs (base URL, a client config, counts).

`EmulatorHandle` is what every started emulator offers, in this process (`RunningEmulator`, `start`) or in a
process of its own (`ProcessEmulator`, `localdev/chartmogul_emulator/process.py`); code that needs only that
works with either.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self

from localdev.chartmogul_emulator.app import create_server
from localdev.chartmogul_emulator.core import Emulator
from localdev.chartmogul_emulator.options import EmulatorOptions


class EmulatorHandle(ABC):
    """A started emulator, wherever it runs. Stop it with `stop()` or by leaving its `with` block."""

    options: EmulatorOptions

    @property
    @abstractmethod
    def base_url(self) -> str:
        """E.g. `http://127.0.0.1:40123`; the API lives under `/v1`."""

    @abstractmethod
    def start(self) -> Self:
        """Serve (a `with` block calls it)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and free what it holds; the state is gone unless `db_path` keeps it."""

    @abstractmethod
    def request_counts(self) -> dict[str, Any]:
        """Counts by route and status, as `GET /_admin/requests` answers them."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Every stored object, as `GET /_admin/state` answers it."""

    @abstractmethod
    def reset(self) -> None:
        """Empty the state and the request counters (`POST /_admin/reset`)."""

    @abstractmethod
    def set_clock(self, now: dt.datetime | None) -> None:
        """The emulator's "now" (customer MRR and status, "cancellation must be in the past"); None: the real
        clock."""

    @abstractmethod
    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        """Injected faults from now on (`None` or `""`: none), as `PUT /_admin/faults`."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def api_key(self) -> str:
        return self.options.api_key

    def client_config(self, request_timeout: float | tuple[float, float] | None = 10.0, max_retries: int = 0) -> Any:
        """A `chartmogul.Config` pointed at this emulator (docs/sources.md#cm-client-config: `uri` set on the
        instance)."""
        import chartmogul

        config = chartmogul.Config(self.api_key, request_timeout=request_timeout, max_retries=max_retries)
        config.uri = self.api_url
        return config


class RunningEmulator(EmulatorHandle):
    """An emulator serving from threads of this process; `server`, `emulator` and `options` are the live objects
    (a change to `options` takes effect at once)."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.server, self.emulator = create_server(options)

    def start(self) -> Self:
        self.server.start()
        self.emulator.start_background()
        return self

    def stop(self) -> None:
        self.emulator.stop_background()
        self.server.stop()
        self.emulator.store.close()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def request_counts(self) -> dict[str, Any]:
        return self.server.request_report()

    def state(self) -> dict[str, Any]:
        return self.emulator.store.dump()

    def reset(self) -> None:
        self.server.reset()

    def set_clock(self, now: dt.datetime | None) -> None:
        self.options.now = now

    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        self.server.set_faults(spec, seed)


def start(options: EmulatorOptions | None = None, **overrides: Any) -> RunningEmulator:
    """Start on a free loopback port (unless `port` is given); `overrides` are `EmulatorOptions` fields."""
    chosen = dataclasses.replace(options or EmulatorOptions(), **overrides)
    return RunningEmulator(chosen).start()


__all__ = ["Emulator", "EmulatorHandle", "RunningEmulator", "start"]
