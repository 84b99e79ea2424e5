"""Benchmark: the Stripe scenario generator and the emulator's list throughput (rate limits off).

Run as a plain script: `.venv/bin/python benchmarks/bench_stripe_emulator.py [customers] [months]` (default
10,000 customers, 24 months; target: generation under a minute). It prints figures and asserts nothing about
time. List throughput goes through the unmodified `stripe` client over loopback HTTP, 100 objects a page, as the
exporter's backfill reads: every customer, the first pages of invoices (with `expand` of discounts and
payments), and per-customer filtered invoice lists; the invoice pages once more over plain HTTP, because the
client's object construction (~1.5 ms per invoice) dominates the figure through the client.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
import stripe

from localdev.scenarios import generate_account
from localdev.stripe_emulator import start

INVOICE_PAGES = 200  # 20,000 invoices
FILTERED_CUSTOMERS = 300


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    months = int(sys.argv[2]) if len(sys.argv) > 2 else 24

    began = time.perf_counter()
    account = generate_account(customers=customers, months=months, seed=7)
    generated = time.perf_counter() - began
    counts = account.store.counts()
    print(f"generate {customers:,} customers × {months} months: {generated:.1f} s (target < 60 s)")
    print("  objects: " + ", ".join(f"{name} {count:,}" for name, count in counts.items() if count))
    print(f"  peak RSS: {_rss_mb():,.0f} MB")

    began = time.perf_counter()
    truth = account.ground_truth()
    final_mrr = truth["totals"]["mrr"][truth["months"][-1]] / 100
    print(f"ground truth: {time.perf_counter() - began:.1f} s; MRR in the last month ${final_mrr:,.2f}")

    with start(account, rate_limit=None) as emulator:
        client = stripe.StripeClient("sk_test_bench", base_addresses={"api": emulator.base_url}, max_network_retries=0)

        began = time.perf_counter()
        listed = sum(1 for _ in client.v1.customers.list({"limit": 100}).auto_paging_iter())
        _report("customers, all pages", listed, time.perf_counter() - began, emulator.server.request_report())

        emulator.server.counter.reset()
        began = time.perf_counter()
        pages = client.v1.invoices.list({"limit": 100, "expand": ["data.discounts", "data.payments"]})
        invoices = 0
        for _invoice in pages.auto_paging_iter():
            invoices += 1
            if invoices >= INVOICE_PAGES * 100:
                break
        _report("invoices + expand, 200 pages", invoices, time.perf_counter() - began, emulator.server.request_report())

        # The same pages over plain HTTP: the emulator's own throughput, without the client building objects.
        emulator.server.counter.reset()
        session = requests.Session()
        session.headers["Authorization"] = "Bearer sk_test_bench"
        began = time.perf_counter()
        raw, cursor = 0, None
        for _ in range(INVOICE_PAGES):
            params = {"limit": "100", "expand[0]": "data.discounts", "expand[1]": "data.payments"}
            if cursor:
                params["starting_after"] = cursor
            page = session.get(f"{emulator.base_url}/v1/invoices", params=params, timeout=30).json()
            raw += len(page["data"])
            cursor = page["data"][-1]["id"]
            if not page["has_more"]:
                break
        _report(
            "invoices + expand, 200 pages, plain HTTP",
            raw,
            time.perf_counter() - began,
            emulator.server.request_report(),
        )

        emulator.server.counter.reset()
        ids = [customer.id for customer in list(account.store.customers.values())[:FILTERED_CUSTOMERS]]
        began = time.perf_counter()
        filtered = 0
        for customer_id in ids:
            filtered += sum(
                1 for _ in client.v1.invoices.list({"customer": customer_id, "limit": 100}).auto_paging_iter()
            )
        _report(
            f"invoices?customer=, {len(ids)} customers",
            filtered,
            time.perf_counter() - began,
            emulator.server.request_report(),
        )


def _report(what: str, objects: int, seconds: float, requests: dict[str, object]) -> None:
    total = requests["total"]
    assert isinstance(total, int)
    print(
        f"list {what}: {objects:,} objects in {seconds:.2f} s = {objects / seconds:,.0f} objects/s, "
        f"{total} requests = {total / seconds:,.0f} requests/s"
    )


if __name__ == "__main__":
    main()
