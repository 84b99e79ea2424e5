"""Start the emulator in-process and hand out what a caller needs (base URL, a client config, counts)."""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Any

from localdev.chartmogul_emulator.app import create_server
from localdev.chartmogul_emulator.core import Emulator
from localdev.chartmogul_emulator.options import EmulatorOptions


class RunningEmulator:
    """A started emulator. Stop it with `stop()` or by leaving its `with` block."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.server, self.emulator = create_server(options)

    def start(self) -> RunningEmulator:
        self.server.start()
        self.emulator.start_background()
        return self

    def stop(self) -> None:
        self.emulator.stop_background()
        self.server.stop()
        self.emulator.store.close()

    def __enter__(self) -> RunningEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """E.g. `http://127.0.0.1:40123`; the API lives under `/v1`."""
        return self.server.base_url

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

    def request_counts(self) -> dict[str, Any]:
        return self.server.request_report()

    def reset(self) -> None:
        self.server.reset()


def start(options: EmulatorOptions | None = None, **overrides: Any) -> RunningEmulator:
    """Start on a free loopback port (unless `port` is given); `overrides` are `EmulatorOptions` fields."""
    chosen = dataclasses.replace(options or EmulatorOptions(), **overrides)
    return RunningEmulator(chosen).start()


__all__ = ["Emulator", "RunningEmulator", "start"]
