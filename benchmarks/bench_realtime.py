"""Near-real-time benchmark: how long a change in Stripe takes to reach ChartMogul through EventBridge, and what
it costs in Stripe requests, through the local runtime with both emulators' rate limits on.

    .venv/bin/python benchmarks/bench_realtime.py                    # 40 changes on 80 customers
    .venv/bin/python benchmarks/bench_realtime.py --changes 20 --windows   # with Lambda's batching windows

After a backfill, a thread applies a burst of scenario changes in Stripe (upgrades, seat changes, refunds,
cancellations, each on its own customer) at `--rate` changes a second; the Stripe emulator delivers its events to
the partner event bus in moto, the template's rule routes them to the Stripe events queue, and the local runtime
runs the Stripe events, transform and upload triggers until every changed customer's bundle is applied. No
schedule runs.

Prints:
- latency per changed customer, from the change in Stripe to the upload's return with its bundle applied
  (p50, p95, max), with the pollers' batching windows off (processing alone) or on (`--windows`: the deployed
  10 s + 5 s + 10 s);
- Stripe requests per changed customer, and the Stripe events function's request budget per batch
  (`Settings.stripe_requests_per_second`);
- events delivered, Stripe events function invocations, snapshots sent (one per customer and batch).

Figures are printed, never asserted: they depend on the machine. The Stripe emulator limits requests to Stripe's
25/s (test mode), the ChartMogul emulator to 40/s; the Stripe events function keeps to its part of the sync's
share (`STRIPE_REALTIME_SHARE` of `STRIPE_RATE_LIMIT_SHARE`, as the template sets them, split between the trigger's
`STRIPE_EVENTS_MAX_CONCURRENCY` batches), the rest being the export function's. The local runtime runs up to the
trigger's MaximumConcurrency batches at once, as Lambda does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "layers" / "common")]

CHANGE_KINDS = ("upgrade", "change_quantity", "refund", "cancel")
MAX_SECONDS = 900.0  # bound on the whole burst: a stuck pipeline ends the benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=80)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--rate", type=float, default=10.0, help="changes a second in the burst")
    parser.add_argument("--windows", action="store_true", help="honour the triggers' batching windows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--share", type=float, default=0.5, help="STRIPE_RATE_LIMIT_SHARE")
    parser.add_argument(
        "--realtime-share", type=float, default=None, help="STRIPE_REALTIME_SHARE (default: the template's)"
    )
    args = parser.parse_args()

    from chartmogul_sync.config import Settings
    from localdev.pipeline import STRIPE_TEST_KEY, LocalPipeline, PipelineOptions
    from localdev.scenarios import generate_account

    account = generate_account(customers=args.customers, months=args.months, seed=args.seed)
    options = PipelineOptions(
        stripe_rate_limit="stripe",
        chartmogul_rate_limit=40.0,
        stripe_event_destination=True,
        wait_for_batching_window=args.windows,
        # The functions' INFO logs and metric lines would bury the figures.
        extra_environment={
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "STRIPE_RATE_LIMIT_SHARE": str(args.share),
            # On every function, so the export function's part stays the complement of this one.
            **({} if args.realtime_share is None else {"STRIPE_REALTIME_SHARE": str(args.realtime_share)}),
        },
    )
    with LocalPipeline(account, options) as pipeline:
        pipeline.backfill()
        applied_at: dict[str, float] = {}
        written_at: dict[str, float] = {}
        _record_uploads(pipeline, applied_at, written_at)
        candidates = _paying_customers(pipeline)

        stripe_before = pipeline.stripe_request_total()
        delivered_before = pipeline.event_destination.published_total if pipeline.event_destination else 0
        burst = threading.Thread(
            target=_apply_burst, args=(pipeline, candidates, args.changes, args.rate, applied_at), daemon=True
        )
        started = time.monotonic()
        burst.start()
        realtime_environment = dict(pipeline.stack.function("StripeEventsFunction").environment)
        audit_share = float(pipeline.stack.function("ExportFunction").environment.get("STRIPE_AUDIT_SHARE", "0"))
        export_invocations = snapshots = 0
        while time.monotonic() - started < MAX_SECONDS:  # bounded
            if not burst.is_alive() and applied_at and set(applied_at) <= set(written_at):
                break
            if pipeline.event_destination is not None:
                pipeline.event_destination.publish_pending()
            report = pipeline.stack.drain(max_batches=10_000, timeout_seconds=MAX_SECONDS)
            export_invocations += len(report.batches_of("StripeEventsFunction"))
            snapshots += sum(len(b.message_ids) for b in report.batches_of("TransformFunction"))
            time.sleep(0.02)
        burst.join(timeout=5)
        stripe_requests = pipeline.stripe_request_total() - stripe_before
        delivered = (pipeline.event_destination.published_total if pipeline.event_destination else 0) - delivered_before

    latencies = sorted(written_at[c] - applied_at[c] for c in applied_at if c in written_at)
    changed = len(applied_at)
    settings = Settings(
        stripe_rate_limit_share=args.share,
        stripe_realtime_share=float(realtime_environment["STRIPE_REALTIME_SHARE"]),
        stripe_events_max_concurrency=int(realtime_environment["STRIPE_EVENTS_MAX_CONCURRENCY"]),
        stripe_audit_share=audit_share,  # the export function gives the daily audit its part
    )
    budget = settings.stripe_requests_per_second(STRIPE_TEST_KEY, realtime=True)
    export_budget = settings.stripe_requests_per_second(STRIPE_TEST_KEY)
    print(f"account: {args.customers} customers x {args.months} months; burst: {changed} changes at {args.rate}/s")
    print(f"batching windows: {'on (10 s + 5 s + 10 s)' if args.windows else 'off (processing alone)'}")
    print(
        f"Stripe events delivered to EventBridge: {delivered}; "
        f"Stripe events function invocations: {export_invocations}; "
        f"snapshots: {snapshots} for {changed} changed customers"
    )
    if latencies:
        print(
            f"latency change -> ChartMogul write (s): p50 {_percentile(latencies, 50):.2f}  "
            f"p95 {_percentile(latencies, 95):.2f}  max {latencies[-1]:.2f}  "
            f"({len(latencies)} of {changed} written)"
        )
    print(
        f"Stripe requests: {stripe_requests} = {stripe_requests / max(changed, 1):.1f} per changed customer; "
        f"Stripe events function budget {budget:.2f} requests/s per batch "
        f"(x {settings.stripe_events_max_concurrency}), export function {export_budget:.2f} (Stripe test mode 25/s)"
    )


def _paying_customers(pipeline: Any) -> list[str]:
    from localdev.stripe_emulator import records

    now = pipeline.account.store.now
    return sorted(
        {
            s.customer
            for s in pipeline.account.store.collection("subscriptions").newest_first()
            if isinstance(s, records.Subscription) and s.ended_at is None and s.status_at(now) == "active"
        }
    )


def _apply_burst(pipeline: Any, candidates: list[str], changes: int, rate: float, applied_at: dict[str, float]) -> None:
    """One change per customer, kinds in turn, paced at `rate` a second; a change that does not fit is skipped."""
    kinds = iter(CHANGE_KINDS * len(candidates))
    for customer in candidates:
        if len(applied_at) == changes:
            return
        kind = next(kinds)
        step: dict[str, Any] = {"kind": kind, "customer": customer}
        if kind == "change_quantity":
            step["quantity"] = 9
        try:
            pipeline.stripe.apply_step(step)
        except ValueError:
            continue
        applied_at[customer] = time.monotonic()
        time.sleep(1 / rate)


def _record_uploads(pipeline: Any, applied_at: dict[str, float], written_at: dict[str, float]) -> None:
    """Wrap the upload handler: when a batch returns, each bundle it applied is in ChartMogul. Only the first
    upload of a changed customer after its change counts (a renewal may have brought it earlier)."""
    upload = pipeline.stack.function("UploadFunction")
    real = upload.handler

    def recording(event: dict[str, Any], context: Any) -> Any:
        response = real(event, context)
        done = time.monotonic()
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                customer = json.loads(record["body"]).get("customer_external_id")
                if customer in applied_at and customer not in written_at:
                    written_at[customer] = done
        return response

    pipeline.stack.use_handler("UploadFunction", recording)


def _percentile(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


if __name__ == "__main__":
    main()
