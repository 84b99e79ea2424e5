"""A stateful Stripe API emulator for offline tests, the demo and benchmarks (see README.md).

In-process (`start`), or in an OS process of its own (`start_process`: its page rendering does not share this
interpreter), both behind `StripeEmulatorHandle`."""

from localdev.stripe_emulator.eventbridge import EventBridgeDestination
from localdev.stripe_emulator.handle import StripeEmulatorHandle
from localdev.stripe_emulator.process import ProcessStripeEmulator, StripeProcessError, start_process
from localdev.stripe_emulator.render import API_VERSION
from localdev.stripe_emulator.server import RunningStripeEmulator, endpoint_rate, start
from localdev.stripe_emulator.store import StripeStore

__all__ = [
    "API_VERSION",
    "EventBridgeDestination",
    "ProcessStripeEmulator",
    "RunningStripeEmulator",
    "StripeEmulatorHandle",
    "StripeProcessError",
    "StripeStore",
    "endpoint_rate",
    "start",
    "start_process",
]
