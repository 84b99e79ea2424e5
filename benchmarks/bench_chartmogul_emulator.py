"""How many requests per second the ChartMogul emulator serves on one core with the rate limit off.

It must stay well above 1,000/s so that it is never what a pipeline benchmark measures. Prints figures;
asserts nothing. Run: `.venv/bin/python benchmarks/bench_chartmogul_emulator.py`.

Server and client share this process, pinned to one CPU: the figures are what one core does for both.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
from collections.abc import Callable

import chartmogul

from localdev.chartmogul_emulator import start


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned (no sched_setaffinity)"


def rate(label: str, count: int, action: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for index in range(count):
        action(index)
    elapsed = time.perf_counter() - started
    per_second = count / elapsed
    print(f"  {label:<58} {count:>6} requests  {per_second:>8,.0f} req/s")
    return per_second


def main() -> None:
    print(f"ChartMogul emulator benchmark ({pin_to_one_core()}, rate limit off)")
    with start(rate_limit=None, max_connections=None) as emulator:
        config = emulator.client_config()
        ds = chartmogul.DataSource.create(config, data={"name": "bench"}).get()
        plan = chartmogul.Plan.create(
            config,
            data={"data_source_uuid": ds.uuid, "name": "Pro", "interval_count": 1, "interval_unit": "month"},
        ).get()
        customer = chartmogul.Customer.create(config, data={"data_source_uuid": ds.uuid, "external_id": "c0"}).get()

        port = emulator.server.port
        auth = "Basic " + base64.b64encode(f"{emulator.api_key}:".encode()).decode()
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def keep_alive_get(path: str) -> Callable[[int], None]:
            def send(_: int) -> None:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status

            return send

        def keep_alive_post_customer(index: int) -> None:
            body = json.dumps({"data_source_uuid": ds.uuid, "external_id": f"bench_{index}"})
            connection.request("POST", "/v1/customers", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 201, response.status

        def client_ping(_: int) -> None:
            chartmogul.Ping.ping(config).get()

        def client_import_invoice(index: int) -> None:
            line = {
                "type": "subscription",
                "subscription_external_id": "si_1",
                "plan_uuid": plan.uuid,
                "service_period_start": "2024-01-01",
                "service_period_end": "2024-02-01",
                "amount_in_cents": 1000,
            }
            invoice = {"external_id": f"in_{index}", "date": "2024-01-01", "currency": "USD", "line_items": [line]}
            chartmogul.Invoice.create(config, uuid=customer.uuid, data={"invoices": [invoice]}).get()

        print("raw HTTP/1.1 keep-alive (the emulator's own cost):")
        simple = rate("GET /v1/ping", 5000, keep_alive_get("/v1/ping"))
        rate("GET /v1/customers/{uuid} (with MRR)", 3000, keep_alive_get(f"/v1/customers/{customer.uuid}"))
        rate("POST /v1/customers", 2000, keep_alive_post_customer)
        connection.close()
        print("through the chartmogul client (a new connection per call, as the client does):")
        rate("Ping.ping", 1000, client_ping)
        rate("Invoice.create (one invoice, one subscription line)", 500, client_import_invoice)
        print(f"simple requests/s: {simple:,.0f} (target: at least 1,000)")


if __name__ == "__main__":
    main()
