"""Export benchmark: what a backfill costs in Stripe requests, what an idle incremental run costs, and whether
the backfill's memory stays flat as the account grows.

    .venv/bin/python benchmarks/bench_export.py            # 1,000 and 10,000 customers (a few minutes)
    .venv/bin/python benchmarks/bench_export.py --small    # 200 and 2,000 customers (quick look)

Prints, per account size:
- Stripe requests of a backfill ÷ Σ ceil(objects / 100) over the lists the backfill pages (its steps: the
  catalog, customers, and the customer-owned lists; not invoice payments, which come embedded in their
  invoices), and ÷ the true minimum (goal ≤ 1.1): that sum plus what no exporter can avoid, the line pages of
  invoices longer than Stripe's embedded lines and the pages of `customer.deleted` events;
- Stripe requests of an incremental run when nothing changed (goal 1);
- the export function's peak memory during the backfill (goal: flat from 1,000 to 10,000 customers).

The export function runs in a child process, so its memory is measured apart from the Stripe emulator's store
and moto's (both in this process, reached over loopback: the emulator directly, moto through its server).
Figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "layers" / "common")]

STRIPE_KEY = "sk_test_bench_export"
# Objects a snapshot holds, by the emulator's collection names (printed for scale).
SNAPSHOT_TYPES = (
    "products",
    "prices",
    "customers",
    "subscriptions",
    "invoices",
    "invoiceitems",
    "invoice_payments",
    "charges",
    "refunds",
    "credit_notes",
)


def paged_collections() -> tuple[str, ...]:
    """The emulator collections a whole-history backfill pages through, 100 per page: its listing steps. The
    lower bound counts these once each; invoice payments are embedded in invoices and never listed."""
    from chartmogul_sync.sources.stripe.backfill import STEPS
    from chartmogul_sync.sources.stripe.client import StripeList

    collection = {StripeList.INVOICE_ITEMS: "invoiceitems"}
    return tuple(collection.get(step.resource, step.resource.value) for step in STEPS if step.resource is not None)


# ---------------------------------------------------------------------------- child: the export function


def child(config_path: str) -> None:
    import tracemalloc
    from datetime import UTC, datetime

    import boto3

    config = json.loads(Path(config_path).read_text())
    os.environ.update(config["environment"])
    from chartmogul_sync.sources.stripe.run import ExportLimits
    from chartmogul_sync.sources.stripe.wiring import export_wiring
    from localdev.aws.lambda_model import LocalLambdaContext, load_handler

    handler = load_handler(REPO / "functions" / "export", "app.lambda_handler", "bench_export")
    pending: list[dict[str, Any]] = []
    export_wiring.continuation = lambda continuation, _context: pending.append(continuation.model_dump(mode="json"))
    export_wiring.clock = lambda: datetime.fromtimestamp(config["now"], UTC)
    export_wiring.limits = ExportLimits(handover_reserve_s=config["handover_reserve_s"])
    sqs = boto3.client("sqs")
    raw_queue = config["environment"]["RAW_QUEUE_URL"]

    rss_after_invocations: list[float] = []

    def current_rss_mib() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def run(event: dict[str, Any]) -> dict[str, Any]:
        totals = {"invocations": 0, "stripe_requests": 0, "stripe_retries": 0, "customers_enqueued": 0}
        pending.append(event)
        while pending:
            context = LocalLambdaContext(config["function_name"], config["function_arn"], 512, 900)
            outcome = handler(pending.pop(0), context)
            drain(sqs, raw_queue)
            rss_after_invocations.append(round(current_rss_mib(), 1))
            totals["invocations"] += 1
            totals["customers_enqueued"] += outcome["customers_enqueued"]
            for key in ("stripe_requests", "stripe_retries"):
                totals[key] += outcome["invocation"][key]
        return totals

    if config["trace"]:
        tracemalloc.start()
    started = time.monotonic()
    backfill = run({"mode": "backfill"})
    backfill["seconds"] = round(time.monotonic() - started, 1)
    backfill["peak_traced_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()
    backfill["rss_after_invocations"] = rss_after_invocations[:]
    # VmHWM: this process's peak resident set since exec. (ru_maxrss would not do: Linux carries the forking
    # parent's high-water mark over exec, and the parent holds the whole emulated account.)
    backfill["max_rss_mib"] = round(peak_rss_mib(), 1)
    idle = run({"mode": "incremental"})
    Path(config["result_path"]).write_text(json.dumps({"backfill": backfill, "incremental": idle}))


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark measures memory on Linux)")


def drain(sqs: Any, queue_url: str) -> None:
    # PurgeQueue is limited to once a minute; receive and delete instead (bounded: the queue holds what one
    # invocation sent).
    for _ in range(100_000):
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )


# ---------------------------------------------------------------------------- parent: the account and AWS


def stripe_lower_bound(account: Any) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(object counts, pages of each list the backfill pages, what else no exporter can avoid) of an account.

    bench_backfill.py divides by the same figures."""
    counts = account.store.counts()
    counts["customers"] = sum(1 for c in account.store.customers if c.deleted_at is None)  # deleted: not listed
    lower_bound = {name: math.ceil(counts[name] / 100) for name in paged_collections()}
    # What no exporter can avoid beyond the global lists: Stripe embeds only the first EMBEDDED_LINES lines of an
    # invoice and has no global line list, so a longer invoice costs its own line pages; deleted customers are
    # not listed, so they are found through their `customer.deleted` events, 100 a page (reference
    # docs/sources.md#stripe-lists, #stripe-pagination, #stripe-events).
    from localdev.stripe_emulator import records
    from localdev.stripe_emulator.render import EMBEDDED_LINES

    line_pages = sum(
        math.ceil((len(invoice.lines) - EMBEDDED_LINES) / 100)
        for invoice in account.store.collection("invoices").newest_first()
        if isinstance(invoice, records.Invoice) and len(invoice.lines) > EMBEDDED_LINES
    )
    deleted = sum(1 for c in account.store.customers if c.deleted_at is not None)
    unavoidable = {
        "invoice line pages past the embedded ones": line_pages,
        "customer.deleted event pages": math.ceil(deleted / 100),
    }

    return counts, lower_bound, unavoidable


def measure(customers: int, months: int, handover_reserve_s: float, trace: bool) -> dict[str, Any]:
    from localdev.aws.runtime import local_stack
    from localdev.scenarios import generate_account
    from localdev.stripe_emulator import start

    started = time.monotonic()
    account = generate_account(customers=customers, months=months, seed=42)
    generated_s = time.monotonic() - started
    counts, lower_bound, unavoidable = stripe_lower_bound(account)

    with start(account, rate_limit=None) as emulator, local_stack(backend="server") as stack:
        stack.put_secret_value("StripeApiKeySecret", STRIPE_KEY)
        function = stack.function("ExportFunction")
        environment = {
            **function.environment,
            "STRIPE_API_BASE": emulator.base_url,
            "LOG_LEVEL": "WARNING",
            # The emulator serves without a rate limit here, so the export's Stripe budget is not one either: the
            # benchmark counts requests and memory, not seconds.
            "STRIPE_RATE_LIMIT_PER_SECOND": "100000",
            **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        }
        with tempfile.TemporaryDirectory() as scratch:
            config_path, result_path = Path(scratch, "config.json"), Path(scratch, "result.json")
            config_path.write_text(
                json.dumps(
                    {
                        "environment": environment,
                        "now": account.store.now,
                        "function_name": function.name,
                        "function_arn": function.arn,
                        "result_path": str(result_path),
                        "handover_reserve_s": handover_reserve_s,
                        "trace": trace,
                    }
                )
            )
            subprocess.run(
                [sys.executable, __file__, "--child", str(config_path)],
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=3600,
            )
            result: dict[str, Any] = json.loads(result_path.read_text())
        result["emulator_requests"] = emulator.server.counter.total()
        result["requests_by_route"] = {
            route: sum(by_status.values()) for route, by_status in emulator.server.counter.snapshot().items()
        }
    result.update(
        customers=customers,
        generated_s=round(generated_s, 1),
        lower_bound=lower_bound,
        unavoidable=unavoidable,
        counts=counts,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="200 and 2,000 customers instead of 1,000 and 10,000")
    # Invocations hand over after `--invocation-seconds`: continuations are part of what is measured, and the raw
    # queue is emptied between invocations (moto's SQS slows down as a queue grows; messages are not measured).
    parser.add_argument("--months", type=int, default=6, help="months of history per account (default 6)")
    parser.add_argument(
        "--invocation-seconds", type=float, default=10.0, help="how long an invocation runs before it hands over"
    )
    parser.add_argument("--no-trace", action="store_true", help="RSS only, without tracemalloc (faster)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sizes = (200, 2_000) if args.small else (1_000, 10_000)
    reserve = 900.0 - args.invocation_seconds
    results = [measure(customers, args.months, reserve, not args.no_trace) for customers in sizes]

    print(f"export benchmark: backfill and incremental against the Stripe emulator ({args.months} months of history)")
    for result in results:
        backfill, idle = result["backfill"], result["incremental"]
        bound = sum(result["lower_bound"].values())
        print(f"\n== {result['customers']:,} customers")
        print("  objects:", ", ".join(f"{name} {result['counts'][name]:,}" for name in SNAPSHOT_TYPES))
        pages = ", ".join(f"{name} {n:,}" for name, n in result["lower_bound"].items())
        print(f"  lower bound: ceil(objects / 100) over the lists the backfill pages: {pages}")
        print(
            f"  backfill: {backfill['stripe_requests']:,} Stripe requests / lower bound {bound:,} "
            f"= ratio {backfill['stripe_requests'] / bound:.3f}; {backfill['invocations']} invocations, "
            f"{backfill['customers_enqueued']:,} snapshots, {backfill['seconds']} s"
        )
        unavoidable = result["unavoidable"]
        full_bound = bound + sum(unavoidable.values())
        print(
            "  plus what every exporter must fetch beyond the lists: "
            + ", ".join(f"{what} {n:,}" for what, n in unavoidable.items())
            + f" → minimum {full_bound:,} requests, ratio {backfill['stripe_requests'] / full_bound:.3f} (goal <= 1.1)"
        )
        paged_routes = {f"GET /v1/{name}" for name in result["lower_bound"]}
        others = {route: n for route, n in sorted(result["requests_by_route"].items()) if route not in paged_routes}
        print("  requests besides the paged lists (both runs):", ", ".join(f"{r} {n:,}" for r, n in others.items()))
        print(f"  incremental with nothing changed: {idle['stripe_requests']} Stripe request(s) (goal 1)")
        traced = "" if args.no_trace else f"{backfill['peak_traced_mib']} MiB traced by Python, "
        print(f"  backfill peak memory: {traced}{backfill['max_rss_mib']} MiB peak RSS of the function's process")
        rss = backfill["rss_after_invocations"]
        print(f"  RSS after each invocation: first {rss[0]} MiB, last {rss[-1]} MiB, max {max(rss)} MiB")
        print(f"  (emulator answered {result['emulator_requests']:,} requests in all)")
    small, large = results
    ratio = large["customers"] / small["customers"]
    rss_growth = large["backfill"]["max_rss_mib"] / small["backfill"]["max_rss_mib"]
    print(f"\npeak RSS, {large['customers']:,} vs {small['customers']:,} customers: x{rss_growth:.2f} for x{ratio:.0f}")
    if not args.no_trace:
        traced_growth = large["backfill"]["peak_traced_mib"] / max(small["backfill"]["peak_traced_mib"], 0.1)
        print(f"peak traced Python memory: x{traced_growth:.2f} for x{ratio:.0f} customers (goal: flat)")


if __name__ == "__main__":
    main()
