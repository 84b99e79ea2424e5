"""Rate limit, connection cap, fault injection, TLS, admin endpoints and the command line."""

from __future__ import annotations

import contextlib
import queue
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chartmogul
import pytest
import requests

from localdev.chartmogul_emulator import start
from localdev.chartmogul_emulator.running import RunningEmulator

from .helpers import api_error, data_source

RATE_LIMIT_BODY = {"code": 429, "message": "Your request rate has exceeded our rate limit.", "param": None}


@pytest.fixture
def limited() -> Iterator[RunningEmulator]:
    """Its own emulator with a low rate limit, so the shared one stays unlimited."""
    emulator = start(rate_limit=5, max_connections=None)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def capped() -> Iterator[RunningEmulator]:
    """Its own emulator with a low connection cap."""
    emulator = start(rate_limit=None, max_connections=3)
    try:
        yield emulator
    finally:
        emulator.stop()


def _ping(config: Any) -> requests.Response | None:
    """None when the ping succeeded, else the failed HTTP response (status, body, headers)."""
    try:
        chartmogul.Ping.ping(config).get()
        return None
    except chartmogul.APIError as error:
        return error.__cause__.response  # type: ignore[no-any-return]


def _ping_status(config: Any) -> int:
    failed = _ping(config)
    return 200 if failed is None else failed.status_code


def test_a_burst_over_the_rate_limit_gets_429_with_the_documented_message(limited: RunningEmulator) -> None:
    config = limited.client_config()
    answers = [_ping(config) for _ in range(30)]  # bounded burst; all 30 would pass only over > 5 s
    assert answers[:5] == [None] * 5  # the bucket starts full
    refused = [answer for answer in answers if answer is not None]
    assert refused, "no request was rate limited"
    assert all(answer.status_code == 429 and answer.json() == RATE_LIMIT_BODY for answer in refused)
    assert "Retry-After" not in refused[0].headers  # docs/sources.md#cm-rate-limits: production sends none by default
    counts = limited.request_counts()["routes"]["GET /v1/ping"]
    assert counts == {"200": 30 - len(refused), "429": len(refused)}


def test_retry_after_is_optional(limited: RunningEmulator) -> None:
    limited.server.set_retry_after(True)
    with requests.Session() as session:
        session.auth = (limited.api_key, "")
        answers = [session.get(limited.api_url + "/ping", timeout=5) for _ in range(30)]
    limited_answers = [answer for answer in answers if answer.status_code == 429]
    assert limited_answers and int(limited_answers[0].headers["Retry-After"]) >= 1


def _hold_requests(emulator: RunningEmulator, count: int) -> list[threading.Thread]:
    """`count` pings kept in progress by a `timeout` fault (released when its hold ends)."""
    emulator.server.settings.fault_hold_seconds = 1.0
    emulator.server.set_faults("timeout:1")
    patient = emulator.client_config(request_timeout=5)

    def ping() -> None:
        with contextlib.suppress(requests.ConnectionError):  # the held request ends without an answer
            chartmogul.Ping.ping(patient).get()

    threads = [threading.Thread(target=ping, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for _ in range(250):  # bounded wait until all are in progress
        if emulator.server.connections.open == count:
            break
        time.sleep(0.02)
    assert emulator.server.connections.open == count
    emulator.server.set_faults("")
    return threads


def test_requests_over_the_parallel_cap_get_503(capped: RunningEmulator) -> None:
    config = capped.client_config()
    held = _hold_requests(capped, 3)
    status, body = api_error(lambda: chartmogul.Ping.ping(config).get())
    assert (status, body) == (503, "503 Service Unavailable")  # docs/sources.md#cm-rate-limits, plain-text 5xx
    for thread in held:
        thread.join(timeout=5)
    assert chartmogul.Ping.ping(config).get().data == "pong!"
    assert capped.request_counts()["routes"]["GET /v1/ping"] == {"timeout": 3, "503": 1, "200": 1}


def test_a_burst_of_parallel_requests_over_20_gets_503(
    chartmogul_emulator: RunningEmulator, chartmogul_config: Any
) -> None:
    """The production cap: 20 requests in progress, then a bounded burst of 5 more."""
    chartmogul_emulator.server.set_max_connections(20)
    held = _hold_requests(chartmogul_emulator, 20)
    statuses = [_ping_status(chartmogul_config) for _ in range(5)]
    assert statuses == [503] * 5
    for thread in held:
        thread.join(timeout=5)
    assert _ping_status(chartmogul_config) == 200


def test_idle_connections_do_not_count(capped: RunningEmulator) -> None:
    idle = [socket.create_connection(("127.0.0.1", capped.server.port), timeout=5) for _ in range(5)]
    try:
        assert chartmogul.Ping.ping(capped.client_config()).get().data == "pong!"
    finally:
        for connection in idle:
            connection.close()


def test_latency_delays_every_answer_and_holds_the_connection_slot() -> None:
    """With 200 ms latency and 2 connections, two pings answer after ≥ 200 ms and a third meanwhile gets 503."""
    with start(rate_limit=None, max_connections=2, latency_ms=200) as emulator:
        config = emulator.client_config()
        started = time.monotonic()
        assert chartmogul.Ping.ping(config).get().data == "pong!"
        assert time.monotonic() - started >= 0.2
        held = [threading.Thread(target=_ping_status, args=(config,)) for _ in range(2)]
        for thread in held:
            thread.start()
        for _ in range(100):  # bounded: until both are in progress
            if emulator.server.connections.open == 2:
                break
            time.sleep(0.01)
        assert _ping_status(config) == 503
        for thread in held:
            thread.join(timeout=5)
        emulator.server.set_latency(0)
        started = time.monotonic()
        assert _ping_status(config) == 200 and time.monotonic() - started < 0.2


def test_the_command_line_takes_a_latency() -> None:
    from click.testing import CliRunner

    from chartmogul_sync.cli import main

    result = CliRunner().invoke(main, ["emulate", "chartmogul", "--latency-ms", "-5"])
    assert result.exit_code == 2 and "--latency-ms" in result.output


def test_injected_5xx_are_plain_text(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    chartmogul_emulator.server.set_faults("504:1")
    assert api_error(lambda: chartmogul.Ping.ping(chartmogul_config).get()) == (504, "504 Gateway Timeout Error")
    chartmogul_emulator.server.set_faults("500:1")
    assert api_error(lambda: chartmogul.Ping.ping(chartmogul_config).get()) == (500, "500 Internal Server Error")
    chartmogul_emulator.server.set_faults("429:1")
    assert api_error(lambda: chartmogul.Ping.ping(chartmogul_config).get()) == (429, RATE_LIMIT_BODY)


def test_reset_and_timeout_faults(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    chartmogul_emulator.server.set_faults("reset:1")
    with pytest.raises(requests.ConnectionError):
        chartmogul.Ping.ping(chartmogul_config).get()
    chartmogul_emulator.server.set_faults("timeout:1")
    chartmogul_emulator.server.settings.fault_hold_seconds = 1.0
    quick = chartmogul_emulator.client_config(request_timeout=0.2)
    with pytest.raises(requests.Timeout):
        chartmogul.Ping.ping(quick).get()
    counts = chartmogul_emulator.request_counts()["routes"]["GET /v1/ping"]
    assert counts == {"reset": 1, "timeout": 1}


def test_the_same_seed_gives_the_same_fault_sequence(
    chartmogul_emulator: RunningEmulator, chartmogul_config: Any
) -> None:
    def sequence() -> list[int]:
        chartmogul_emulator.server.set_faults("500:0.3,503:0.2", seed=42)
        return [_ping_status(chartmogul_config) for _ in range(20)]

    first, second = sequence(), sequence()
    assert first == second
    assert {200, 500, 503} == set(first)


def test_a_failed_state_change_is_not_stored(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    chartmogul_emulator.server.set_faults("500:1")
    api_error(lambda: data_source(chartmogul_config, "never"))
    chartmogul_emulator.server.set_faults("")
    assert chartmogul.DataSource.all(chartmogul_config).get().data_sources == []


def _seed_failing_first_then_passing(probability: float) -> int:
    """A seed whose first draw injects the fault and whose second does not."""
    for seed in range(1000):
        generator = random.Random(seed)
        if generator.random() < probability <= generator.random():
            return seed
    raise AssertionError("no such seed")


def test_tls_lets_the_clients_own_retry_path_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/sources.md#cm-client-retries: the client retries only over https; a 503 then a 200 must end in success."""
    seed = _seed_failing_first_then_passing(0.5)
    with start(tls=True, rate_limit=None, faults="503:0.5", seed=seed) as emulator:
        assert emulator.base_url.startswith("https://127.0.0.1:")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.server.ca_cert_path))
        config = chartmogul.Config(emulator.api_key, request_timeout=5, max_retries=2, backoff_factor=0)
        config.uri = emulator.api_url
        assert chartmogul.Ping.ping(config).get().data == "pong!"
        assert emulator.request_counts()["routes"]["GET /v1/ping"] == {"200": 1, "503": 1}


def test_admin_endpoints(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    admin = chartmogul_emulator.base_url + "/_admin"
    data_source(chartmogul_config, "Admin check")
    state = requests.get(admin + "/state", timeout=5).json()
    assert [ds["name"] for ds in state["data_sources"]] == ["Admin check"]
    counts = requests.get(admin + "/requests", timeout=5).json()
    assert counts["routes"] == {"POST /v1/data_sources": {"201": 1}} and counts["total"] == 1
    bad = requests.put(admin + "/faults", json={"spec": "500:2"}, timeout=5)
    assert bad.status_code == 400
    assert requests.put(admin + "/faults", json={"spec": "502:1", "seed": 3}, timeout=5).json()["spec"] == "502:1"
    assert api_error(lambda: chartmogul.Ping.ping(chartmogul_config).get()) == (502, "502 Bad Gateway")
    requests.put(admin + "/faults", json={"spec": ""}, timeout=5)
    limits = requests.put(
        admin + "/rate-limit", json={"rate": 100, "max_connections": 10, "retry_after": True}, timeout=5
    )
    assert limits.json() == {
        "rate": 100,
        "burst": 100,
        "route_rate": None,
        "route_burst": None,
        "max_connections": 10,
        "retry_after": True,
        "latency_ms": 0,
    }
    assert requests.put(admin + "/rate-limit", json={"latency_ms": -1}, timeout=5).status_code == 400
    assert requests.post(admin + "/reset", timeout=5).status_code == 204
    assert requests.get(admin + "/state", timeout=5).json()["data_sources"] == []
    assert requests.get(admin + "/requests", timeout=5).json()["total"] == 0


def test_command_line_serves_until_stopped(tmp_path: Any) -> None:
    database = tmp_path / "state.sqlite"
    command = str(Path(sys.executable).parent / "cmsync")
    process = subprocess.Popen(
        # --exit-after: should this test's worker die, the server still ends by itself.
        [command, "emulate", "chartmogul", "--port", "0", "--db", str(database), "--exit-after", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout

        def forward_lines() -> None:
            for output_line in stdout:
                lines.put(output_line)

        threading.Thread(target=forward_lines, daemon=True).start()
        url = None
        for _ in range(20):  # bounded: the banner is the first lines of output
            try:
                line = lines.get(timeout=10)
            except queue.Empty:
                break
            found = re.search(r"API:\s+(http://127\.0\.0\.1:\d+/v1)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "no API line in the output"
        config = chartmogul.Config("cm_emulator_key", request_timeout=5, max_retries=0)
        config.uri = url
        assert chartmogul.DataSource.create(config, data={"name": "persisted"}).get().name == "persisted"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert database.exists() and database.stat().st_size > 0


def test_command_line_server_ends_by_itself_after_exit_after() -> None:
    command = str(Path(sys.executable).parent / "cmsync")
    for emulator, extra in (("chartmogul", []), ("stripe", ["--customers", "3", "--months", "1"])):
        finished = subprocess.run(
            [command, "emulate", emulator, "--port", "0", "--exit-after", "1", *extra],
            capture_output=True,
            text=True,
            timeout=60,  # the assertion is that it ends; the bound only keeps a broken build from hanging CI
        )
        assert finished.returncode == 0, finished.stdout + finished.stderr
        assert "127.0.0.1" in finished.stdout


def test_a_bad_fault_spec_is_refused_by_the_command_line() -> None:
    from click.testing import CliRunner

    from chartmogul_sync.cli import main

    result = CliRunner().invoke(main, ["emulate", "chartmogul", "--faults", "teapot:0.5"])
    assert result.exit_code != 0 and "unknown fault kind" in result.output


def test_the_in_process_start_reads_state_from_a_file(tmp_path: Any) -> None:
    path = str(tmp_path / "cm.sqlite")
    with start(db_path=path, rate_limit=None) as first:
        data_source(first.client_config(), "kept")
    with start(db_path=path, rate_limit=None) as second:
        assert [ds.name for ds in chartmogul.DataSource.all(second.client_config()).get().data_sources] == ["kept"]
