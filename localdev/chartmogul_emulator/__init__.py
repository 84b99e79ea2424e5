"""The ChartMogul Import API emulator (issue 3). See README.md in this directory.

In-process use (tests, the demo, benchmarks)::

    from localdev.chartmogul_emulator import start

    with start(rate_limit=None) as emulator:          # a free port on 127.0.0.1
        config = emulator.client_config()             # a chartmogul.Config pointed at it
        chartmogul.Ping.ping(config).get()
"""

from localdev.chartmogul_emulator.options import DEFAULT_API_KEY, EmulatorOptions
from localdev.chartmogul_emulator.running import RunningEmulator, start

__all__ = ["DEFAULT_API_KEY", "EmulatorOptions", "RunningEmulator", "start"]
