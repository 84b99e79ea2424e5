"""The ChartMogul emulator in an OS process of its own (`start_process`): the official client over loopback, the
options it was given, its clock, its counts, and that it never outlives its parent."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chartmogul
import pytest

from localdev.chartmogul_emulator import (
    EmulatorHandle,
    EmulatorOptions,
    EmulatorProcessError,
    ProcessEmulator,
    start,
    start_process,
)
from localdev.chartmogul_emulator.process import options_from_json, options_to_json
from tests.integration.chartmogul_emulator.helpers import (
    api_error,
    customer,
    data_source,
    import_invoices,
    invoice,
    plan,
)

FAST: dict[str, Any] = {
    "rate_limit": None,
    "max_connections": None,
    "bulk_queued_seconds": 0.05,
    "bulk_processing_seconds": 0.05,
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[ProcessEmulator]:
    with start_process(**FAST) as running:
        yield running


@pytest.fixture
def config(emulator: ProcessEmulator) -> Any:
    emulator.reset()
    emulator.set_clock(None)
    return emulator.client_config()


def refuses_connections(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


def admin_get(emulator: EmulatorHandle, path: str) -> Any:
    with urllib.request.urlopen(emulator.base_url + path, timeout=5) as answer:
        return json.load(answer)


def admin_put(emulator: EmulatorHandle, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        emulator.base_url + path,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_official_client_imports_through_the_child_and_its_counts_and_state_are_read(
    emulator: ProcessEmulator, config: Any
) -> None:
    ds = data_source(config)
    created = customer(config, ds.uuid, external_id="cus_1", name="Ada")
    assert chartmogul.Customer.retrieve(config, uuid=created.uuid).get().name == "Ada"

    counts = emulator.request_counts()
    assert counts["routes"]["POST /v1/data_sources"] == {"201": 1}
    assert counts["routes"]["POST /v1/customers"] == {"201": 1}
    assert counts["total"] == 3
    assert [c["external_id"] for c in emulator.state()["customers"]] == ["cus_1"]
    assert admin_get(emulator, "/_admin/process")["pid"] == emulator.pid  # the CPU it reports is the child's
    assert emulator.cpu_seconds() > 0

    emulator.reset()
    assert emulator.request_counts()["total"] == 0
    assert chartmogul.DataSource.all(config).get().data_sources == []


def test_the_clock_set_from_the_parent_decides_what_is_in_the_future(emulator: ProcessEmulator, config: Any) -> None:
    ds = data_source(config)
    buyer = customer(config, ds.uuid)
    monthly = plan(config, ds.uuid)
    line = {
        "type": "subscription",
        "subscription_external_id": "si_1",
        "plan_uuid": monthly.uuid,
        "service_period_start": "2026-03-01T00:00:00Z",
        "service_period_end": "2026-04-01T00:00:00Z",
        "amount_in_cents": 1000,
    }
    # The emulator's "now" on 1 February 2026: an invoice of 1 March is in the future (stored with errors).
    emulator.set_clock(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert emulator.clock() == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    early = import_invoices(config, buyer.uuid, invoice("in_1", "2026-03-01T00:00:00Z", [line]))
    assert early.invoices[0].errors == {"date": ["Date is in the future"]}
    # Moved on to 1 April, the same date is in the past.
    emulator.set_clock(dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    later = import_invoices(config, buyer.uuid, invoice("in_2", "2026-03-01T00:00:00Z", [line]))
    assert not later.invoices[0].errors


def test_the_clock_endpoint_moves_an_in_process_emulator_as_options_now_does() -> None:
    with start(rate_limit=None) as running:
        assert admin_put(running, "/_admin/clock", {"now": "2026-02-01T00:00:00Z"}) == (
            200,
            {"now": "2026-02-01T00:00:00+00:00"},
        )
        assert running.options.now == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        running.set_clock(None)
        assert admin_get(running, "/_admin/clock") == {"now": None}


def test_a_bad_clock_is_refused_naming_the_field(emulator: ProcessEmulator) -> None:
    emulator.set_clock(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    status, body = admin_put(emulator, "/_admin/clock", {"now": "soon"})
    assert (status, body["error"]) == (400, "now: 'soon' is not an ISO 8601 time, e.g. 2026-02-01T00:00:00Z")
    assert admin_put(emulator, "/_admin/clock", {"now": 1})[0] == 400
    assert emulator.clock() == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)  # unchanged


def test_faults_are_switched_from_the_parent(emulator: ProcessEmulator, config: Any) -> None:
    emulator.set_faults("500:1", seed=1)
    status, _body = api_error(lambda: chartmogul.Ping.ping(config).get())
    assert status == 500
    emulator.set_faults(None)
    assert chartmogul.Ping.ping(config).get().data == "pong!"


def test_every_option_reaches_the_child() -> None:
    # Each field away from its default, so a field the encoding dropped would come back as the default.
    changed = EmulatorOptions(
        api_key="cm_other_key",
        db_path="/tmp/state.sqlite",
        rates={"USD": 1.0, "JPY": 0.0067},
        invoice_batch_mode="partial",
        now=dt.datetime(2026, 2, 1, 12, 30, tzinfo=dt.UTC),
        reject_future_cancellations=False,
        undeclared_custom_attributes="ignore",
        auto_churn_enabled=False,
        auto_churn_interval_days=None,
        bulk_queued_seconds=1.5,
        bulk_processing_seconds=2.5,
        bulk_max_bytes=1024,
        host="127.0.0.2",
        port=18787,
        tls=True,
        rate_limit=None,
        burst=7.0,
        max_connections=3,
        retry_after=True,
        faults="500:0.1",
        seed=9,
        fault_hold_seconds=4.0,
        latency_ms=12.5,
        log_requests=True,
    )
    defaults = EmulatorOptions()
    assert [
        f.name for f in dataclasses.fields(EmulatorOptions) if getattr(changed, f.name) == getattr(defaults, f.name)
    ] == []
    assert options_from_json(options_to_json(changed)) == changed


def test_the_started_child_uses_the_options_it_was_given() -> None:
    with start_process(api_key="cm_other_key", rate_limit=12.0, max_connections=4, latency_ms=30) as running:
        assert admin_get(running, "/_admin/rate-limit") == {
            "rate": 12.0,
            "burst": 12.0,
            "route_rate": None,  # ChartMogul documents no per-endpoint limit
            "route_burst": None,
            "max_connections": 4,
            "retry_after": False,
            "latency_ms": 30.0,
        }
        assert chartmogul.Ping.ping(running.client_config()).get().data == "pong!"
        default_key = chartmogul.Config("cm_emulator_key", max_retries=0)
        default_key.uri = running.api_url
        assert api_error(lambda: chartmogul.Ping.ping(default_key).get())[0] == 401


def test_what_only_an_in_process_emulator_has_is_refused_in_one_line(emulator: ProcessEmulator) -> None:
    with pytest.raises(EmulatorProcessError, match=r"^ProcessEmulator.server: .*own process.*start\(\)$"):
        _ = emulator.server
    with pytest.raises(EmulatorProcessError, match=r"^ProcessEmulator.emulator: "):
        _ = emulator.emulator
    with pytest.raises(AttributeError, match=r"^options.now cannot change: .*set_clock\(\)"):
        emulator.options.now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert emulator.options.latency_ms == 0.0  # reading is fine


def test_a_child_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(EmulatorProcessError, match=r"^the ChartMogul emulator process did not start: .*database"):
        start_process(db_path=str(tmp_path / "missing" / "state.sqlite"))


def test_stop_ends_the_child_and_frees_its_port() -> None:
    running = start_process(**FAST)
    process, base_url = running._running(), running.base_url
    running.stop()
    assert process.returncode == 0
    assert refuses_connections(base_url)
    running.stop()  # a second stop does nothing
    with pytest.raises(EmulatorProcessError, match="not running"):
        running.request_counts()


PARENT = textwrap.dedent(
    """
    import json, sys, time
    from localdev.chartmogul_emulator import start_process

    running = start_process(rate_limit=None)
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
