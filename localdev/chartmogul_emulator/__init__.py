"""The ChartMogul Import API emulator (issue 3). See README.md in this directory.

In-process use (tests, the demo, benchmarks)::

    from localdev.chartmogul_emulator import start

    with start(rate_limit=None) as emulator:          # a free port on 127.0.0.1
        config = emulator.client_config()             # a chartmogul.Config pointed at it
        chartmogul.Ping.ping(config).get()

In a process of its own (benchmarks: its work does not share this interpreter), the same handle over HTTP::

    from localdev.chartmogul_emulator import start_process

    with start_process(rate_limit=None) as emulator:  # any EmulatorOptions field as a keyword
        chartmogul.Ping.ping(emulator.client_config()).get()
        emulator.set_clock(now)                       # in-process: emulator.options.now = now
"""

from localdev.chartmogul_emulator.options import DEFAULT_API_KEY, EmulatorOptions
from localdev.chartmogul_emulator.process import EmulatorProcessError, ProcessEmulator, start_process
from localdev.chartmogul_emulator.running import EmulatorHandle, RunningEmulator, start

__all__ = [
    "DEFAULT_API_KEY",
    "EmulatorHandle",
    "EmulatorOptions",
    "EmulatorProcessError",
    "ProcessEmulator",
    "RunningEmulator",
    "start",
    "start_process",
]
