"""The Stripe emulator in an OS process of its own (`start_process`): the official client over loopback, the same
account as the same seed generates in this process, the clock, scenario steps and ground truth over its admin
endpoints doing what the in-process calls do, and that it never outlives its parent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from localdev.scenarios import DEFAULT_NOW, AccountSpec, generate_account
from localdev.stripe_emulator import (
    ProcessStripeEmulator,
    StripeEmulatorHandle,
    StripeProcessError,
    start,
    start_process,
)

from .conftest import TEST_KEY, client_for, error_code

SPEC = AccountSpec(customers=12, months=6, seed=4, now=DEFAULT_NOW)


@pytest.fixture(scope="module")
def emulator() -> Iterator[ProcessStripeEmulator]:
    with start_process(SPEC, rate_limit=None) as running:
        yield running


def customer_ids(emulator: StripeEmulatorHandle) -> list[str]:
    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": emulator.base_url})
    return [customer.id for customer in client.v1.customers.list({"limit": 100}).auto_paging_iter()]


def test_the_child_serves_the_account_the_same_seed_generates_here(emulator: ProcessStripeEmulator) -> None:
    assert emulator.pid != os.getpid()
    here = generate_account(customers=SPEC.customers, months=SPEC.months, seed=SPEC.seed, now=SPEC.now)
    assert emulator.state()["objects"] == here.store.counts()
    assert emulator.clock.now == here.store.now
    with start(here, rate_limit=None) as in_process:
        assert customer_ids(emulator) == customer_ids(in_process)
        assert emulator.active_subscribers() == in_process.active_subscribers()
    report = emulator.request_report()
    assert report["routes"]["GET /v1/customers"] == {"200": 1}
    assert emulator.cpu_seconds() > 0  # the child's own: it generated the account


def test_clock_and_steps_over_http_do_what_the_in_process_calls_do() -> None:
    account = generate_account(customers=SPEC.customers, months=SPEC.months, seed=SPEC.seed, now=SPEC.now)
    with start_process(SPEC, rate_limit=None) as child, start(account, rate_limit=None) as here:
        subscriber = child.active_subscribers()[0]
        steps: list[dict[str, Any]] = [
            {"kind": "cancel", "customer": subscriber},
            {"kind": "new_customer", "plan": "Pro", "interval": "monthly", "currency": "usd"},
        ]
        for handle in (child, here):
            assert [handle.apply_step(step)["kind"] for step in steps] == ["cancel", "new_customer"]
            before = handle.clock.now
            assert handle.clock.advance(days=35) == before + 35 * 86_400  # renewals fall due on the way
            with pytest.raises(ValueError, match="only moves forward"):
                handle.clock.set(before)
        assert child.clock.now == here.clock.now
        assert child.state()["objects"] == here.state()["objects"]
        assert child.ground_truth() == json.loads(json.dumps(here.ground_truth()))
        assert subscriber not in child.active_subscribers()
        with pytest.raises(ValueError, match="cus_nobody"):  # a step that does not fit: the reason, as in-process
            child.apply_step({"kind": "upgrade", "customer": "cus_nobody"})


def test_faults_latency_and_limits_are_set_over_the_admin_surface() -> None:
    with start_process(SPEC, rate_limit="stripe") as emulator:
        assert emulator.rate_limit == 25.0  # test mode's
        client = client_for(emulator)
        emulator.set_faults("500:1.0", seed=1)
        with pytest.raises(stripe.APIError):
            client.v1.customers.list({"limit": 1})
        emulator.set_faults(None)
        emulator.set_latency(0.3)
        started = time.monotonic()
        client.v1.customers.list({"limit": 1})
        assert time.monotonic() - started >= 0.3
        assert emulator.request_report()["routes"]["GET /v1/customers"] == {"500": 1, "200": 1}
        with pytest.raises(stripe.InvalidRequestError) as unknown:
            client.v1.customers.retrieve("cus_nobody")
        assert error_code(unknown.value) == "resource_missing"


def test_what_only_an_in_process_emulator_has_is_refused_with_what_to_use(emulator: ProcessStripeEmulator) -> None:
    for name in ("server", "store", "account"):
        with pytest.raises(StripeProcessError, match=rf"ProcessStripeEmulator\.{name}: .*request_report\(\)"):
            getattr(emulator, name)


def test_a_child_that_cannot_start_says_why_and_a_stopped_one_refuses() -> None:
    with pytest.raises(StripeProcessError, match="did not start: ValueError: an account needs at least one customer"):
        start_process(AccountSpec(customers=0, months=6, seed=1, now=SPEC.now))
    running = start_process(SPEC)
    base_url = running.base_url
    running.stop()
    assert refuses_connections(base_url)
    running.stop()  # a second stop does nothing
    with pytest.raises(StripeProcessError, match="not running"):
        running.request_report()


def refuses_connections(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


PARENT = textwrap.dedent(
    """
    import json, time
    from localdev.scenarios import DEFAULT_NOW, AccountSpec
    from localdev.stripe_emulator import start_process

    running = start_process(AccountSpec(customers=3, months=2, seed=1, now=DEFAULT_NOW))
    print(json.dumps({"pid": running.pid, "base_url": running.base_url}), flush=True)
    time.sleep(60)
    """
)


def process_gone(pid: int) -> bool:
    """No such process, or a zombie waiting for its new parent to reap it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")


def test_a_killed_parent_leaves_no_child() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[3]
    )
    child: dict[str, Any] | None = None
    try:
        assert parent.stdout is not None
        child = json.loads(parent.stdout.readline())
        with urllib.request.urlopen(child["base_url"] + "/_admin/requests", timeout=5) as answer:
            assert answer.status == 200  # serving while its parent lives
        parent.send_signal(signal.SIGKILL)  # no chance to stop it
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not process_gone(child["pid"]) and time.monotonic() < deadline:  # bounded by the deadline
            time.sleep(0.1)
        assert process_gone(child["pid"])
        assert refuses_connections(child["base_url"])
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if child is not None and not process_gone(child["pid"]):  # the test failed: still leave no orphan
            os.kill(child["pid"], signal.SIGKILL)
