"""The child side of `start_process` (process.py, which describes the protocol): `python -m
localdev.stripe_emulator.child` reads its `StripeProcessOptions` as one JSON line on stdin, generates the account
from its parameters, serves it, answers its URL on stdout and stops when stdin reaches end of file (its parent
stopped it or died), on SIGTERM, or when its parent pid changes (localdev/child_process.py)."""

from __future__ import annotations

import os
import signal
import sys

from localdev.child_process import ready_channel, wait_while_parent_lives
from localdev.scenarios import generate_account
from localdev.stripe_emulator.process import StripeProcessOptions
from localdev.stripe_emulator.server import start


def serve_until_parent_goes() -> int:
    parent = os.getppid()
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    tell_parent = ready_channel()  # a stray print must not fill a pipe no one reads
    try:
        options = StripeProcessOptions.from_json(sys.stdin.buffer.readline())
        spec = options.account
        account = generate_account(customers=spec.customers, months=spec.months, seed=spec.seed, now=spec.now)
        emulator = start(
            account,
            mode=options.mode,
            rate_limit=options.rate_limit,
            endpoint_rate_limit=options.endpoint_rate_limit,
            faults=options.faults,
            seed=options.fault_seed,
            host=options.host,
            port=options.port,
            event_list_lag_s=options.event_list_lag_s,
            restricted_keys=(
                {key: frozenset(grants) for key, grants in options.restricted_keys.items()}
                if options.restricted_keys
                else None
            ),
            follow_wall_clock=options.follow_wall_clock,
        )
        emulator.set_latency(options.latency_s)
    except (ValueError, TypeError, KeyError, OSError) as error:
        tell_parent({"error": f"{type(error).__name__}: {error}"})
        return 1
    tell_parent({"base_url": emulator.base_url})
    try:
        wait_while_parent_lives(parent, stopping=lambda: bool(stopping))
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(serve_until_parent_goes())
