"""Incremental export benchmark: Stripe requests per changed customer (the issue's goal: <= 5).

    .venv/bin/python benchmarks/bench_incremental.py                   # 200 customers (well under a minute)
    .venv/bin/python benchmarks/bench_incremental.py --customers 1000

One generated account (`--months` of history, seed 42, as bench_backfill.py) runs through `LocalPipeline`: a
backfill, then the round of changes bench_backfill.py applies (`apply_demo_changes`: upgrades, downgrades, seat
changes, refunds, credit notes, cancellations, a pause, a deletion, two new customers and two simulated days of
renewals), then one incremental run. Rate limits and latency are off on both emulators: the figures are request
counts, which they do not change, and the run is quick. It prints, and asserts nothing:

- Stripe requests per changed customer (customers the run exported), everything the run asked for included
  (events, catalog, the account-wide lists);
- the same without the events and catalog pages every run lists, and the requests by route.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "layers" / "common")]

from localdev.pipeline import LocalPipeline, PipelineOptions  # noqa: E402
from localdev.scenarios import generate_account  # noqa: E402

# What a run lists whatever its customers: the events since its cursor and the catalog.
PER_RUN_ROUTES = ("GET /v1/events", "GET /v1/prices", "GET /v1/products")


def run(customers: int, months: int) -> None:
    started = time.monotonic()
    account = generate_account(customers=customers, months=months, seed=42)
    options = PipelineOptions(
        upload_mode="bulk",
        stripe_rate_limit=None,
        chartmogul_rate_limit=None,
        chartmogul_options={"latency_ms": 0},
        extra_environment={"LOG_LEVEL": "WARNING"},
        drain_timeout_s=3600.0,
        max_batches=200_000,
    )
    # The functions log JSON to stdout as in Lambda: kept out of the figures.
    with contextlib.redirect_stdout(io.StringIO()), LocalPipeline(account, options) as pipeline:
        pipeline.backfill(upload_mode="bulk")
        steps = pipeline.apply_demo_changes()
        before = pipeline.stripe.server.counter.snapshot()
        incremental = pipeline.incremental()
        after = pipeline.stripe.server.counter.snapshot()
    routes = {route: sum(statuses.values()) - sum(before.get(route, {}).values()) for route, statuses in after.items()}
    routes = {route: n for route, n in sorted(routes.items(), key=lambda item: -item[1]) if n}
    changed = incremental.functions["ExportFunction"].records
    total = incremental.stripe_requests
    per_run = sum(n for route, n in routes.items() if route in PER_RUN_ROUTES)
    print(
        f"incremental benchmark: {customers:,} customers x {months} months, {sum('result' in s for s in steps)} "
        f"changes and 2 simulated days ({time.monotonic() - started:.0f} s in all)"
    )
    print(
        f"  {total:,} Stripe requests for {changed} changed customers = {total / max(changed, 1):.2f} per changed "
        f"customer  (goal <= 5); without the {per_run} for events and catalog: "
        f"{(total - per_run) / max(changed, 1):.2f}"
    )
    print("  by route: " + ", ".join(f"{route} {n:,}" for route, n in routes.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200, help="account size (default 200)")
    parser.add_argument("--months", type=int, default=24, help="months of history (default 24)")
    args = parser.parse_args()
    if args.customers < 1 or args.months < 1:
        parser.error("--customers and --months must be at least 1")
    run(args.customers, args.months)


if __name__ == "__main__":
    main()
