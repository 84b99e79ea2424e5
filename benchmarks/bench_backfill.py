"""Backfill benchmark: a whole pipeline run against ChartMogul's limits, with realistic latency.

    .venv/bin/python benchmarks/bench_backfill.py                      # 200 customers, bulk mode (a few minutes)
    .venv/bin/python benchmarks/bench_backfill.py --customers 1000
    .venv/bin/python benchmarks/bench_backfill.py --upload-mode api --latency-ms 0
    .venv/bin/python benchmarks/bench_backfill.py --customers 1000 --attributes none   # no custom attributes
    .venv/bin/python benchmarks/bench_backfill.py --chartmogul-process   # the ChartMogul emulator in its own process
    .venv/bin/python benchmarks/bench_backfill.py --stripe-process       # the Stripe emulator in its own process
    .venv/bin/python benchmarks/bench_backfill.py --customers 1000 --aws-backend process  # moto in its own process
    .venv/bin/python benchmarks/bench_backfill.py --customers 1000 --upload-alone   # the upload with full batches
    .venv/bin/python benchmarks/bench_backfill.py --customers 1000 --no-customer-heads  # customers created late
    .venv/bin/python benchmarks/bench_backfill.py --customers 1000 --time-scale 4  # slow motion: limits ÷ 4

One generated account (`--months` of history, seed 42) runs through `LocalPipeline`: the real handlers in the
concurrent local runtime (each SQS-triggered function several invocations at once, the upload function up to its
MaximumConcurrency of 3, Lambda's batching windows and 6 MB batches), the export invoked asynchronously as the
schedule or `cmsync backfill` does, so transform and upload work beside it. The Stripe emulator runs at Stripe's
live-mode limit (100 requests/s, `--stripe-rate`; the export takes its default share of it, 45/s) and the
ChartMogul emulator at ChartMogul's (40 requests/s, 20 parallel connections), with `--latency-ms` added to every
ChartMogul request (default 150 ms; `--stripe-latency-ms` for Stripe, default 300 ms), and Stripe's 25 requests/s per
endpoint on (`--stripe-endpoint-rate`). Then a round of changes in Stripe
and an incremental run. It prints, and asserts nothing (the figures depend on the machine):

- ChartMogul requests per customer (the issue's goal in bulk mode: <= 0.3);
- aggregate ChartMogul requests/s ÷ 40 while the upload function has work, i.e. from the start of its first batch
  to the end of its last one (goal >= 0.9);
- Stripe requests ÷ the pages no exporter can avoid (bench_export.py's lower bound);
- the backfill's wall time ÷ the floor max(Stripe pages ÷ 100/s, ChartMogul requests ÷ 40/s) (goal <= 1.3), with
  the floor at the test-mode 25/s printed beside it (the pipeline runs in test mode);
- Stripe requests per changed customer (customers the run exported) in the incremental run (goal <= 5);
- DynamoDB requests per customer (the state table: leases, id map, applied versions, checkpoints, heartbeats), as
  moto counts them when it runs in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "layers" / "common"), str(REPO / "benchmarks")]

from bench_export import stripe_lower_bound  # noqa: E402

from chartmogul_sync.config import STRIPE_ENDPOINT_REQUESTS_PER_SECOND, Settings  # noqa: E402
from localdev.aws import moto_fixes  # noqa: E402
from localdev.aws.lambda_model import patched_environ  # noqa: E402
from localdev.aws.moto_process import process_cpu_seconds  # noqa: E402
from localdev.aws.poller import BatchOutcome  # noqa: E402
from localdev.aws.runtime import BACKENDS  # noqa: E402
from localdev.chartmogul_emulator import EmulatorOptions, ProcessEmulator  # noqa: E402
from localdev.pipeline import READ_TIMEOUT_S, STRIPE_TEST_KEY, LocalPipeline, PipelineOptions, StageReport  # noqa: E402
from localdev.scenarios import generate_account  # noqa: E402
from localdev.stripe_emulator import ProcessStripeEmulator  # noqa: E402

CHARTMOGUL_RATE = 40.0  # requests/s per account
STRIPE_LIVE_RATE = 100.0  # requests/s, live mode
# The ChartMogul emulator's bulk-import delays (EmulatorOptions), scaled with --time-scale.
BULK_QUEUED_S = EmulatorOptions.bulk_queued_seconds
BULK_PROCESSING_S = EmulatorOptions.bulk_processing_seconds


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits and latencies a run has: the arguments' with --time-scale K applied (rates ÷ K, times × K)."""

    chartmogul_rate: float
    stripe_rate: float
    stripe_endpoint_rate: float
    latency_ms: float
    stripe_latency_ms: float

    @classmethod
    def of(cls, args: argparse.Namespace) -> Limits:
        k = args.time_scale
        return cls(
            CHARTMOGUL_RATE / k, args.stripe_rate / k, args.stripe_endpoint_rate / k,
            args.latency_ms * k, args.stripe_latency_ms * k,
        )  # fmt: skip


class UploadWindow:
    """From the start of the upload function's first batch to the end of its last (on_batch runs as one ends);
    `others` keeps the same window for the other SQS-triggered functions (the timeline printed)."""

    def __init__(self, function: str = "UploadFunction") -> None:
        self.function = function
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.batches = 0
        self.records = 0
        self.failed = 0  # records the function failed (redelivered by SQS), with the invocation errors seen
        self.errors: set[str] = set()
        self.spans: list[tuple[float, float, int]] = []  # (start, end, records) of each batch, from `started`
        self.others: dict[str, UploadWindow] = {}
        self.started = time.monotonic()

    def __call__(self, batch: BatchOutcome) -> None:
        if batch.function != self.function:
            if self.function == "UploadFunction":
                self.others.setdefault(batch.function, UploadWindow(batch.function))(batch)
            return
        end = time.monotonic()
        start = end - batch.duration_s
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        self.last_end = end if self.last_end is None else max(self.last_end, end)
        self.batches += 1
        self.records += len(batch.message_ids)
        self.failed += len(batch.failed_ids)
        if batch.error:
            self.errors.add(batch.error[:200])
        self.spans.append((start - self.started, end - self.started, len(batch.message_ids)))

    @property
    def seconds(self) -> float:
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    account = generate_account(customers=args.customers, months=args.months, seed=42)
    generated_s = time.monotonic() - started
    _counts, lower_bound, unavoidable = stripe_lower_bound(account)
    stripe_pages = sum(lower_bound.values()) + sum(unavoidable.values())
    environment = {"LOG_LEVEL": "WARNING", "CHARTMOGUL_RATE_SHARING": args.rate_sharing}
    if args.time_scale != 1:  # the round trips are K times longer: so is the clients' patience
        environment["HTTP_READ_TIMEOUT_S"] = str(READ_TIMEOUT_S * args.time_scale)
    if args.no_customer_heads:  # each customer created with its whole bundle, after the export listed everything
        environment["BACKFILL_CUSTOMER_HEADS"] = "false"
    if args.attributes == "none":
        # The mapping without custom attributes from metadata (docs/mapping-decisions.md): what a customer costs
        # in ChartMogul requests when the import carries all of it.
        config = Path(tempfile.mkdtemp(prefix="bench-backfill-")) / "mapping.yaml"
        config.write_text("customers:\n  attributes:\n    from_metadata: none\n")
        environment["MAPPING_CONFIG_PATH"] = str(config)
    limits, scale = Limits.of(args), args.time_scale
    options = PipelineOptions(
        upload_mode=args.upload_mode,
        upload_concurrency=args.upload_concurrency,
        stripe_rate_limit=limits.stripe_rate,
        # Stripe's limit per endpoint as well (docs/sources.md#stripe-rate-limits): the backfill reads its lists side
        # by side, each within its part of it.
        stripe_endpoint_rate_limit=limits.stripe_endpoint_rate,
        chartmogul_rate_limit=limits.chartmogul_rate,
        wait_for_batching_window=True,
        chartmogul_options={
            "latency_ms": limits.latency_ms,
            "bulk_queued_seconds": BULK_QUEUED_S * scale,
            "bulk_processing_seconds": BULK_PROCESSING_S * scale,
        },
        chartmogul_process=args.chartmogul_process,
        stripe_process=args.stripe_process,
        extra_environment=environment,
        drain_timeout_s=3600.0,
        max_batches=200_000,
        backend=args.aws_backend,
    )
    window = UploadWindow()
    # The functions log JSON to stdout as in Lambda: kept out of the figures.
    with contextlib.redirect_stdout(io.StringIO()), LocalPipeline(account, options) as pipeline:
        pipeline.stripe.set_latency(limits.stripe_latency_ms / 1000)
        # The export's part of Stripe's rate, as the deployed function computes it from its environment (the user's
        # share, less the parts of the near-real-time and audit functions).
        with patched_environ(pipeline.stack.function("ExportFunction").environment):
            export_rate = Settings().stripe_requests_per_second(STRIPE_TEST_KEY)
        window.started = time.monotonic()
        wall_started = time.time()  # the emulators count requests by the Unix clock's second
        emulator_process = pipeline.chartmogul if isinstance(pipeline.chartmogul, ProcessEmulator) else None
        emulator_cpu_before = emulator_process.cpu_seconds() if emulator_process else 0.0
        stripe_process = pipeline.stripe if isinstance(pipeline.stripe, ProcessStripeEmulator) else None
        stripe_cpu_before = stripe_process.cpu_seconds() if stripe_process else 0.0
        moto_pid = pipeline.stack.moto_pid  # None: moto runs in this process
        moto_cpu_before = process_cpu_seconds(moto_pid) if moto_pid else 0.0
        cpu_before = time.process_time()
        dynamodb_before = moto_fixes.dynamodb_requests()
        if args.upload_alone:  # the uploads' trigger held back: every bundle is queued before the first upload
            pipeline.stack.set_event_sources_enabled("UploadFunction", False)
        backfill = pipeline.backfill(on_batch=window, overlapped=True, upload_mode=args.upload_mode)
        if args.upload_alone:
            pipeline.stack.set_event_sources_enabled("UploadFunction", True)
            chartmogul_before, upload_started = pipeline.chartmogul_request_total(), time.monotonic()
            pipeline.drain(on_batch=window)
            uploaded = pipeline.chartmogul_request_total() - chartmogul_before
            backfill = dataclasses.replace(
                backfill,
                seconds=backfill.seconds + time.monotonic() - upload_started,
                chartmogul_requests=backfill.chartmogul_requests + uploaded,
            )
        cpu_seconds = time.process_time() - cpu_before
        dynamodb_after = moto_fixes.dynamodb_requests()
        emulator_cpu = emulator_process.cpu_seconds() - emulator_cpu_before if emulator_process else None
        stripe_cpu = stripe_process.cpu_seconds() - stripe_cpu_before if stripe_process else None
        moto_cpu = process_cpu_seconds(moto_pid) - moto_cpu_before if moto_pid else None
        # The backfill's own requests by route (read before the incremental run adds its own).
        chartmogul_counts = pipeline.chartmogul.request_counts()
        backfill_routes = chartmogul_counts["routes"]
        peak_connections = chartmogul_counts["peak_requests_in_progress"]
        by_second = {int(second) - int(wall_started): n for second, n in chartmogul_counts["by_second"].items()}
        stripe_by_second = {
            int(second) - int(wall_started): n for second, n in pipeline.stripe.request_report()["by_second"].items()
        }
        steps = pipeline.apply_demo_changes()
        stripe_before = pipeline.stripe.request_report()["routes"]
        incremental = pipeline.incremental()
        stripe_after = pipeline.stripe.request_report()["routes"]
        refused = {
            status: sum(statuses.get(status, 0) for statuses in backfill_routes.values()) for status in ("429", "503")
        }
    return {
        "generated_s": generated_s,
        "export_rate": export_rate,
        "cpu_seconds": cpu_seconds,
        "emulator_cpu_seconds": emulator_cpu,
        "stripe_emulator_cpu_seconds": stripe_cpu,
        "moto_cpu_seconds": moto_cpu,
        # Counted by moto in this process: none when moto runs in a process of its own.
        "dynamodb_requests": {op: n - dynamodb_before.get(op, 0) for op, n in dynamodb_after.items()},
        "stripe_pages": stripe_pages,
        "backfill": backfill,
        "incremental": incremental,
        "steps": sum(1 for step in steps if "result" in step),
        "window": window,
        "peak_connections": peak_connections,
        "chartmogul_by_second": by_second,
        "stripe_by_second": stripe_by_second,
        "refused": refused,
        "stripe_refused": sum(statuses.get("429", 0) for statuses in stripe_before.values()),
        "incremental_stripe_routes": {
            route: sum(statuses.values()) - sum(stripe_before.get(route, {}).values())
            for route, statuses in stripe_after.items()
            if sum(statuses.values()) > sum(stripe_before.get(route, {}).values())
        },
        "backfill_routes": {route: sum(statuses.values()) for route, statuses in backfill_routes.items()},
        "backfill_failures": {
            f"{route} {status}": n
            for route, statuses in backfill_routes.items()
            for status, n in statuses.items()
            if not status.startswith("2")
        },
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    backfill: StageReport = result["backfill"]
    incremental: StageReport = result["incremental"]
    window: UploadWindow = result["window"]
    customers = args.customers
    cm, stripe, pages = backfill.chartmogul_requests, backfill.stripe_requests, result["stripe_pages"]
    limits = Limits.of(args)  # the limits the run had (--time-scale)
    chartmogul_rate = limits.chartmogul_rate
    floor = max(pages / limits.stripe_rate, cm / chartmogul_rate)
    share_floor = max(pages / result["export_rate"], cm / chartmogul_rate)
    imports = result["backfill_routes"].get("POST /v1/data_sources/{uuid}/json_imports", 0)
    rate = cm / window.seconds if window.seconds else 0.0
    print(
        f"backfill benchmark: {customers:,} customers x {args.months} months, upload mode {args.upload_mode}, "
        f"{args.upload_concurrency} upload instances ({args.rate_sharing} rate shares), "
        f"custom attributes from {args.attributes}, "
        f"ChartMogul latency {args.latency_ms:g} ms, "
        f"Stripe latency {args.stripe_latency_ms:g} ms (account generated in {result['generated_s']:.0f} s)"
        + ("; uploads held until every bundle was queued (--upload-alone)" if args.upload_alone else "")
        + ("; no customer heads" if args.no_customer_heads else "")
        + (
            f"; in slow motion x{args.time_scale:g}: ChartMogul {chartmogul_rate:g}/s, Stripe {limits.stripe_rate:g}/s "
            f"({limits.stripe_endpoint_rate:g}/s per endpoint), latencies {limits.latency_ms:g} and "
            f"{limits.stripe_latency_ms:g} ms"
            if args.time_scale != 1
            else ""
        )
    )
    print(f"  ChartMogul requests per customer: {cm:,} / {customers:,} = {cm / customers:.3f}  (goal <= 0.3 in bulk)")
    print(
        f"  ChartMogul requests/s while the upload queue has work: {cm:,} in {window.seconds:.1f} s = {rate:.1f}/s, "
        f"÷ {chartmogul_rate:g} = {rate / chartmogul_rate:.2f}  (goal >= 0.9); {window.batches:,} upload batches of "
        f"{window.records / max(window.batches, 1):.1f} records on average; peak {result['peak_connections']} "
        f"requests in progress; {result['refused']['429']} answered 429, {result['refused']['503']} answered 503"
    )
    if window.failed or window.errors:
        print(f"  upload records failed and redelivered: {window.failed:,}; invocation errors: {sorted(window.errors)}")
    dynamodb = {op: n for op, n in sorted(result["dynamodb_requests"].items(), key=lambda x: -x[1]) if n}
    if dynamodb:
        print(
            f"  DynamoDB requests per customer: {sum(dynamodb.values()):,} / {customers:,} = "
            f"{sum(dynamodb.values()) / customers:.2f} ("
            + ", ".join(f"{op} {n:,}" for op, n in dynamodb.items())
            + "; the rate-sharing heartbeats included)"
        )
    print(
        f"  Stripe requests ÷ unavoidable pages: {stripe:,} / {pages:,} = {stripe / pages:.3f}; "
        f"{result['stripe_refused']} answered 429"
    )
    print(
        f"  backfill wall time ÷ floor: {backfill.seconds:.1f} s / {floor:.1f} s = {backfill.seconds / floor:.2f}  "
        f"(goal <= 1.3; floor = max(Stripe pages ÷ {limits.stripe_rate:g}/s, "
        f"ChartMogul requests ÷ {chartmogul_rate:g}/s)); "
        f"÷ the floor at the export's share of Stripe ({result['export_rate']:g}/s) {share_floor:.1f} s "
        f"= {backfill.seconds / share_floor:.2f}"
    )
    if imports:
        print(f"  bulk imports: {imports:,}, {customers / imports:,.0f} customers each on average")
    routes = ", ".join(f"{route} {n:,}" for route, n in sorted(result["backfill_routes"].items(), key=lambda x: -x[1]))
    print(f"  backfill ChartMogul requests by route: {routes}")
    failures = ", ".join(f"{what} {n:,}" for what, n in sorted(result["backfill_failures"].items()))
    print(f"  of which answered other than 2xx: {failures or 'none'}")
    spans = [(name, w) for name, w in window.others.items()] + [("UploadFunction", window)]
    timeline = ", ".join(
        f"{name} {w.first_start - window.started:.1f}-{w.last_end - window.started:.1f} s ({w.batches} batches)"
        for name, w in spans
        if w.first_start is not None and w.last_end is not None
    )
    print(f"  backfill timeline from the export's invocation: {timeline}")
    spans = ", ".join(f"{start:.1f}-{end:.1f} s ({records})" for start, end, records in sorted(window.spans))
    print(f"  upload batches (start-end, records): {spans}")
    print("  Stripe requests/s by 5 s of the backfill: " + rate_timeline(result["stripe_by_second"], 5))
    print("  ChartMogul requests/s by 5 s of the backfill: " + rate_timeline(result["chartmogul_by_second"], 5))
    # One process holds the emulators, moto and every function instance: CPU near one core's worth of the wall time
    # means the run is bound by this machine (Python runs one thread at a time), not by ChartMogul's limits.
    print(
        f"  this process's CPU during the backfill: {result['cpu_seconds']:.0f} s in {backfill.seconds:.0f} s of wall "
        f"time = {result['cpu_seconds'] / backfill.seconds:.2f} cores busy"
    )
    if result["emulator_cpu_seconds"] is not None:
        print(
            f"  the ChartMogul emulator's own process: {result['emulator_cpu_seconds']:.0f} s of CPU = "
            f"{result['emulator_cpu_seconds'] / backfill.seconds:.2f} cores busy"
        )
    if result["stripe_emulator_cpu_seconds"] is not None:
        print(
            f"  the Stripe emulator's own process: {result['stripe_emulator_cpu_seconds']:.0f} s of CPU = "
            f"{result['stripe_emulator_cpu_seconds'] / backfill.seconds:.2f} cores busy"
        )
    if result["moto_cpu_seconds"] is not None:
        print(
            f"  moto's own process: {result['moto_cpu_seconds']:.0f} s of CPU = "
            f"{result['moto_cpu_seconds'] / backfill.seconds:.2f} cores busy"
        )
    seconds = {name: round(figures.seconds, 1) for name, figures in backfill.functions.items()}
    print(f"  backfill handler seconds by function (summed over instances): {seconds}")
    # The changed customers are those the run exported (one snapshot each): the demo's changes, and the customers
    # the simulated days renewed, invoiced or charged.
    changed = incremental.functions["ExportFunction"].records
    print(
        f"  incremental after {result['steps']} changes and 2 simulated days: "
        f"{incremental.stripe_requests:,} Stripe requests for {changed} changed customers = "
        f"{incremental.stripe_requests / max(changed, 1):.2f} per changed customer  (goal <= 5); "
        f"{incremental.chartmogul_requests:,} ChartMogul requests, {incremental.seconds:.1f} s"
    )
    stripe_routes = sorted(result["incremental_stripe_routes"].items(), key=lambda x: -x[1])
    print("  incremental Stripe requests by route: " + ", ".join(f"{route} {n:,}" for route, n in stripe_routes))


def rate_timeline(by_second: dict[int, int], step: int) -> str:
    """Requests/s in each `step` seconds from the export's invocation, e.g. `0-5 s 0, 5-10 s 12.4, ...`: where
    the run used ChartMogul's 40/s and where it lost it."""
    if not by_second:
        return "none"
    last = max(by_second)
    bins = []
    for start in range(0, last + 1, step):
        count = sum(by_second.get(second, 0) for second in range(start, start + step))
        bins.append(f"{start}-{start + step} s {count / step:.0f}")
    return ", ".join(bins)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200, help="account size (default 200)")
    parser.add_argument("--months", type=int, default=24, help="months of history (default 24)")
    parser.add_argument(
        "--upload-mode", choices=("api", "bulk"), default="bulk", help="of the backfill and the incremental run"
    )
    parser.add_argument("--upload-concurrency", type=int, default=3, help="upload instances (default 3)")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="ChartMogul latency per request")
    parser.add_argument(
        "--stripe-latency-ms",
        type=float,
        default=300.0,
        help="Stripe latency per request (default 300 ms: a guess at a list page of 100 objects with expansions; "
        "Stripe "
        "publishes no figure)",
    )
    parser.add_argument(
        "--rate-sharing",
        choices=("fixed", "busy"),
        default="busy",
        help="how upload instances split ChartMogul's rate (CHARTMOGUL_RATE_SHARING; default busy, as deployed)",
    )
    parser.add_argument(
        "--attributes",
        choices=("metadata", "none"),
        default="metadata",
        help="custom attributes: every Stripe metadata key (the default mapping; each generated customer has one) "
        "or none (the bulk format carries no attributes: each attributed customer costs a request of its own)",
    )
    parser.add_argument(
        "--stripe-rate", type=float, default=STRIPE_LIVE_RATE, help="Stripe's limit, requests/s (live mode: 100)"
    )
    parser.add_argument(
        "--stripe-endpoint-rate",
        type=float,
        default=STRIPE_ENDPOINT_REQUESTS_PER_SECOND,
        help="Stripe's limit per endpoint, requests/s (default 25, Stripe's; 0: none)",
    )
    parser.add_argument(
        "--chartmogul-process",
        action="store_true",
        help="run the ChartMogul emulator in an OS process of its own, so its work does not compete with the "
        "functions for this interpreter (PipelineOptions.chartmogul_process)",
    )
    parser.add_argument(
        "--stripe-process",
        action="store_true",
        help="run the Stripe emulator in an OS process of its own (it regenerates the account from its seed), so "
        "rendering its pages does not compete with the functions for this interpreter (PipelineOptions.stripe_process)",
    )
    parser.add_argument(
        "--upload-alone",
        action="store_true",
        help="hold the upload function's SQS trigger back until the export and the transform have queued every "
        "bundle, then let the upload instances drain the queue: ChartMogul's rate used by the upload alone, with "
        "full batches, as a deployed transform that scales out would leave it (the wall time is then the sum)",
    )
    parser.add_argument(
        "--no-customer-heads",
        action="store_true",
        help="BACKFILL_CUSTOMER_HEADS=false: no customer sent alone ahead of its snapshot, so the uploads start "
        'only once the export has listed every customer\'s history (docs/architecture.md "Customer heads")',
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="K",
        help="slow motion: every rate limit ÷ K and every latency and bulk-import delay × K, so the same requests "
        "are in flight at once while this machine has K times the CPU per request (the figures are then those of "
        "a pipeline whose instances have CPUs of their own, as in Lambda; default 1)",
    )
    parser.add_argument(
        "--aws-backend",
        choices=BACKENDS,
        default="in-process",
        help="where moto runs (localdev/aws/runtime.py): in this process, as a server in this process, or as a "
        "server in a child process, whose CPU is then printed too (default in-process; PipelineOptions.backend)",
    )
    args = parser.parse_args()
    if args.customers < 1 or args.months < 1:
        parser.error("--customers and --months must be at least 1")
    if args.time_scale < 1:
        parser.error("--time-scale must be at least 1")
    report(args, run(args))


if __name__ == "__main__":
    main()
