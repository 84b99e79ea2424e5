"""A stateful Stripe API emulator for offline tests, the demo and benchmarks (see README.md)."""

from localdev.stripe_emulator.eventbridge import EventBridgeDestination
from localdev.stripe_emulator.render import API_VERSION
from localdev.stripe_emulator.server import RunningStripeEmulator, start
from localdev.stripe_emulator.store import StripeStore

__all__ = ["API_VERSION", "EventBridgeDestination", "RunningStripeEmulator", "StripeStore", "start"]
