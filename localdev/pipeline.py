"""The whole pipeline on one machine: a generated Stripe account, both emulators and the template's stack in moto.

    with LocalPipeline(generate_account(customers=200)) as pipeline:
        backfill = pipeline.backfill()                 # export (backfill) → transform → upload, drained
        pipeline.apply_demo_changes()                  # "after the backfill, these customers change"
        incremental = pipeline.incremental()           # export (incremental) → transform → upload, drained

The demo (`cmsync demo`) and the end-to-end tests both run through this one class, so what the demo shows is
what the tests prove. The functions are the real handlers from `functions/`, called by
the local runtime with Lambda's semantics (localdev/aws/runtime.py); only their surroundings are local: moto for
AWS, the emulators for Stripe and ChartMogul, and the export's continuation and clock (sources/stripe/wiring.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from localdev import chartmogul_emulator, stripe_emulator
from localdev.aws.poller import BatchOutcome, PollerOptions
from localdev.aws.runtime import Backend, DrainReport, LocalStack, local_stack
from localdev.scenarios import Account

# The stack's terminal queues: where a record that is not imported must be, with its reason.
DEAD_LETTER_QUEUES = (
    "BadRecordsQueue",
    "RawDeadLetterQueue",
    "UploadDeadLetterQueue",
    "ExportFailedQueue",
    "ScheduleDeadLetterQueue",
)
# Terminal queues only some parameter values deploy (the Stripe events DLQ needs StripePartnerEventSourceName).
OPTIONAL_DEAD_LETTER_QUEUES = ("StripeEventsDeadLetterQueue",)
FUNCTIONS = ("ExportFunction", "TransformFunction", "UploadFunction")
# Functions only some parameter values deploy (the near-real-time export needs StripePartnerEventSourceName).
OPTIONAL_FUNCTIONS = ("StripeEventsFunction",)
STRIPE_TEST_KEY = "sk_test_chartmogul_sync_demo"
# The functions' HTTP read timeout here: the emulators answer on loopback, so a hung request shows in seconds.
READ_TIMEOUT_S = 2.0
# The partner event source a Stripe event destination of type Amazon EventBridge would create (its id is ed_…).
STRIPE_EVENT_SOURCE = "aws.partner/stripe.com/ed_test_chartmogulsynclocal"


@dataclass
class FunctionFigures:
    invocations: int = 0
    records: int = 0  # distinct messages handled (for export: snapshots it enqueued)
    deliveries: int = 0  # messages received, redeliveries included
    failed: int = 0
    seconds: float = 0.0
    throttled: int = 0  # SQS batches Lambda could not invoke the function with (its reserved concurrency was full)


@dataclass
class StageReport:
    """One pipeline run (backfill or incremental) from the export's invocation to empty queues."""

    name: str
    seconds: float
    export_result: Any
    functions: dict[str, FunctionFigures]
    stripe_requests: int
    chartmogul_requests: int


@dataclass
class PipelineOptions:
    upload_mode: Literal["api", "bulk"] = "api"
    # Like Lambda, several invocations of each SQS-triggered function at once (the upload function's
    # MaximumConcurrency is `upload_concurrency`); False runs one batch at a time.
    concurrent: bool = True
    upload_concurrency: int = 3
    # Rate limits: the real ones by default (Stripe 25/s in test mode; ChartMogul 40/s); None switches one off.
    stripe_rate_limit: float | Literal["stripe"] | None = "stripe"
    # Stripe's per-endpoint limit (requests/s of each method + path template; 0: off); None: 25 with "stripe", else off.
    stripe_endpoint_rate_limit: float | None = None
    chartmogul_rate_limit: float | None = 40.0
    stripe_faults: str | None = None
    chartmogul_faults: str = ""
    fault_seed: int = 0
    backend: Backend = "in-process"  # where moto runs: localdev/aws/runtime.py `moto_backend`
    # Bounds of one drain: a stuck pipeline fails loudly instead of spinning.
    max_batches: int = 20_000
    drain_timeout_s: float = 900.0
    # Failed records reappear at once instead of after the queue's visibility timeout (receive counts, and so
    # redrive to the DLQs, are unaffected): a speed-up for a run on one machine.
    failed_record_visibility_timeout: int | None = 0
    extra_environment: Mapping[str, str] = field(default_factory=dict)
    # Any other EmulatorOptions field of the ChartMogul emulator (e.g. `rates`, `invoice_batch_mode`).
    chartmogul_options: Mapping[str, Any] = field(default_factory=dict)
    # The ChartMogul emulator in an OS process of its own (chartmogul_emulator.start_process), so its request
    # handling and bulk imports do not compete with the functions for this interpreter (benchmarks); the handle
    # then offers only what goes over HTTP (no `server`/`emulator` objects, `options` read-only).
    chartmogul_process: bool = False
    # The Stripe emulator in an OS process of its own (stripe_emulator.start_process), so rendering its pages does
    # not compete with the functions for this interpreter (benchmarks). The child generates the account from its
    # parameters (`account.spec`); read it through `pipeline.stripe` (clock, steps, ground truth, counts), not the
    # `Account` given here, which no longer changes. No `stripe_event_destination` with it.
    stripe_process: bool = False
    # Near-real-time sync: deploy the stack with a Stripe partner event source (the Stripe events bus, rule and
    # queue) and have the Stripe emulator deliver its events to that bus in moto (`pipeline.realtime()`).
    stripe_event_destination: bool = False
    # Lambda's batching windows (the Stripe events trigger's 10 s, transform's 5 s, upload's 10 s) or none.
    wait_for_batching_window: bool = False


def _limits_environment(options: PipelineOptions) -> dict[str, str]:
    """The settings that tell the functions the emulators' endpoint and ChartMogul limits, where they are on."""
    environment = {}
    endpoint = stripe_emulator.endpoint_rate(options.stripe_rate_limit, options.stripe_endpoint_rate_limit)
    if endpoint:
        environment["STRIPE_ENDPOINT_RATE_LIMIT_PER_SECOND"] = str(endpoint)
    if options.chartmogul_rate_limit:
        environment["CHARTMOGUL_REQUESTS_PER_SECOND"] = str(options.chartmogul_rate_limit)
    return environment


class LocalPipeline:
    def __init__(self, account: Account, options: PipelineOptions | None = None) -> None:
        self.account = account
        self.options = options or PipelineOptions()
        self._cleanup = ExitStack()
        self.stripe: stripe_emulator.StripeEmulatorHandle
        self.chartmogul: chartmogul_emulator.EmulatorHandle
        self.stack: LocalStack

    # ---- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> LocalPipeline:
        try:
            self._start()
        except BaseException:
            self._cleanup.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cleanup.close()

    def _start(self) -> None:
        options = self.options
        if options.stripe_process and options.stripe_event_destination:
            raise ValueError(
                "PipelineOptions: stripe_event_destination needs the Stripe emulator in this process "
                "(it delivers to moto from here); set stripe_process=False"
            )
        start_stripe = stripe_emulator.start_process if options.stripe_process else stripe_emulator.start
        self.stripe = self._cleanup.enter_context(
            start_stripe(
                self.account,
                mode="test",
                rate_limit=options.stripe_rate_limit,
                endpoint_rate_limit=options.stripe_endpoint_rate_limit,
                faults=options.stripe_faults,
                seed=options.fault_seed,
            )
        )
        if options.stripe_process:
            self._check_the_child_serves_the_account()
        start_emulator = chartmogul_emulator.start_process if options.chartmogul_process else chartmogul_emulator.start
        self.chartmogul = self._cleanup.enter_context(
            start_emulator(
                rate_limit=options.chartmogul_rate_limit,
                faults=options.chartmogul_faults,
                seed=options.fault_seed,
                now=self.stripe_now(),
                # A timeout fault holds the request only a little longer than the uploader's read timeout.
                fault_hold_seconds=3.0,
                **options.chartmogul_options,
            )
        )
        environment = {
            "STRIPE_API_BASE": self.stripe.base_url,
            "CHARTMOGUL_API_URL": self.chartmogul.api_url,
            "UPLOAD_MODE": options.upload_mode,
            "HTTP_READ_TIMEOUT_S": f"{READ_TIMEOUT_S:g}",
            # Sequential, the one running instance may take the account's whole request budget; concurrent, each
            # of the upload_concurrency instances takes its share (the template passes the parameter on).
            **({} if options.concurrent else {"UPLOAD_MAX_CONCURRENCY": "1"}),
            # Stripe's limit, of which the export takes its share (Settings.stripe_requests_per_second), is the
            # emulator's here: Stripe's own with the rate limits on, none (a very high one) with them off.
            "STRIPE_RATE_LIMIT_PER_SECOND": str(self.stripe.rate_limit or 100_000),
            # Likewise each endpoint's limit and ChartMogul's, where the emulators have one: the functions pace
            # themselves by the emulators' (benchmarks slow every limit down, bench_backfill.py --time-scale).
            **_limits_environment(options),
            **options.extra_environment,
        }
        parameters = {"UploadMaximumConcurrency": str(options.upload_concurrency)}
        if options.stripe_event_destination:
            parameters["StripePartnerEventSourceName"] = STRIPE_EVENT_SOURCE
        self.stack = self._cleanup.enter_context(
            local_stack(
                backend=options.backend,
                options=PollerOptions(
                    wait_for_batching_window=options.wait_for_batching_window,
                    failed_record_visibility_timeout=options.failed_record_visibility_timeout,
                    concurrent=options.concurrent,
                ),
                environment=environment,
                parameters=parameters,
            )
        )
        self.stack.put_secret_value("StripeApiKeySecret", STRIPE_TEST_KEY)
        self.stack.put_secret_value("ChartMogulApiKeySecret", self.chartmogul.api_key)
        self._wire_export()
        self.event_destination: stripe_emulator.EventBridgeDestination | None = None
        if options.stripe_event_destination:
            assert isinstance(self.stripe, stripe_emulator.RunningStripeEmulator)  # refused above otherwise
            self.event_destination = self.stripe.add_event_destination(
                stripe_emulator.EventBridgeDestination(self.stack.clients.events, STRIPE_EVENT_SOURCE)
            )

    def _check_the_child_serves_the_account(self) -> None:
        """The child regenerated the account from its parameters: the same seed gives the same account, unless
        this one changed in this process before the pipeline started (what changed would not be in the child)."""
        served, given = self.stripe.state()["objects"], self.account.store.counts()
        if served != given:
            differing = sorted(name for name in {*served, *given} if served.get(name) != given.get(name))
            raise RuntimeError(
                f"the Stripe emulator process serves another account than the one given ({', '.join(differing)} "
                "differ): with stripe_process, change the account through pipeline.stripe (apply_step, clock)"
            )

    def _wire_export(self) -> None:
        # The layer module every import of the export handler shares (sources/stripe/wiring.py): moto cannot run
        # Lambda code, so a continuation is an asynchronous invocation of the local runtime, and "now" is the
        # Stripe emulator's simulated clock.
        from chartmogul_sync.sources.stripe import wiring

        saved = (wiring.export_wiring.continuation, wiring.export_wiring.clock)

        def restore() -> None:
            wiring.export_wiring.continuation, wiring.export_wiring.clock = saved

        self._cleanup.callback(restore)
        stack = self.stack
        wiring.export_wiring.continuation = lambda continuation, _context: stack.invoke_async(
            "ExportFunction", continuation.model_dump(mode="json")
        )
        wiring.export_wiring.clock = self.stripe_now

    # ---- clocks ------------------------------------------------------------------------------------------

    def stripe_now(self) -> datetime:
        return datetime.fromtimestamp(self.stripe.clock.now, UTC)

    def _sync_chartmogul_clock(self) -> None:
        # ChartMogul evaluates "now" (customer MRR, cancellations must be in the past) on the same clock.
        self.chartmogul.set_clock(self.stripe_now())

    # ---- runs --------------------------------------------------------------------------------------------

    def backfill(
        self, on_batch: Callable[[BatchOutcome], None] | None = None, *, overlapped: bool = False, **request: Any
    ) -> StageReport:
        """A backfill run. `overlapped`: the export is invoked asynchronously, so transform and upload work beside
        it from its first flush, as in Lambda (the benchmark's wall time); otherwise it runs first, then the rest."""
        return self._run("backfill", {"mode": "backfill", **request}, on_batch, overlapped=overlapped)

    def incremental(self, on_batch: Callable[[BatchOutcome], None] | None = None) -> StageReport:
        return self._run("incremental", self.incremental_event(), on_batch)

    def sync_customer(self, customer_id: str) -> StageReport:
        return self._run(f"customer {customer_id}", {"mode": "customer", "customer_id": customer_id}, None)

    def realtime(self, on_batch: Callable[[BatchOutcome], None] | None = None) -> StageReport:
        """Near-real-time: what the Stripe emulator delivered to EventBridge since the last look, drained through
        the Stripe events queue, the Stripe events function, transform and upload. No export is invoked: the SQS
        trigger does it."""
        if self.event_destination is None:
            raise RuntimeError("no Stripe event destination: set PipelineOptions.stripe_event_destination")
        self._sync_chartmogul_clock()
        stripe_before, chartmogul_before = self.stripe_request_total(), self.chartmogul_request_total()
        started = time.monotonic()
        self.event_destination.publish_pending()  # whatever the delivery thread has not sent yet
        drained = self.stack.drain(
            max_batches=self.options.max_batches, timeout_seconds=self.options.drain_timeout_s, on_batch=on_batch
        )
        figures = _function_figures(drained)
        return StageReport(
            name="near-real-time",
            seconds=time.monotonic() - started,
            export_result=[b.response for b in drained.batches_of("StripeEventsFunction")],
            functions=figures,
            stripe_requests=self.stripe_request_total() - stripe_before,
            chartmogul_requests=self.chartmogul_request_total() - chartmogul_before,
        )

    def _run(
        self,
        name: str,
        event: dict[str, Any],
        on_batch: Callable[[BatchOutcome], None] | None,
        *,
        overlapped: bool = False,
    ) -> StageReport:
        self._sync_chartmogul_clock()
        stripe_before, chartmogul_before = self.stripe_request_total(), self.chartmogul_request_total()
        started = time.monotonic()
        export_started = time.monotonic()
        if overlapped:
            self.stack.invoke_async("ExportFunction", event)
            result = None
        else:
            result = self.stack.invoke("ExportFunction", event)
        export_seconds = time.monotonic() - export_started
        drained = self.stack.drain(
            max_batches=self.options.max_batches, timeout_seconds=self.options.drain_timeout_s, on_batch=on_batch
        )
        figures = _function_figures(drained)
        export = figures.setdefault("ExportFunction", FunctionFigures())
        if overlapped:  # the first invocation is among the drained asynchronous ones
            exports = [a for a in drained.async_invocations if a.function == "ExportFunction"]
            result = exports[0].response if exports else None
        else:
            export.invocations += 1
            export.seconds += export_seconds
        # What export produced is what transform received: one snapshot message per customer.
        export.records = figures.get("TransformFunction", FunctionFigures()).records
        return StageReport(
            name=name,
            seconds=time.monotonic() - started,
            export_result=result,
            functions=figures,
            stripe_requests=self.stripe_request_total() - stripe_before,
            chartmogul_requests=self.chartmogul_request_total() - chartmogul_before,
        )

    def start_export(self, event: dict[str, Any]) -> None:
        """Invoke the export function asynchronously (it runs in the next `drain`, beside whatever else runs)."""
        self._sync_chartmogul_clock()
        self.stack.invoke_async("ExportFunction", event)

    def incremental_event(self) -> dict[str, Any]:
        """The schedule's event for a run now."""
        return {"mode": "incremental", "scheduled_time": self.stripe_now().strftime("%Y-%m-%dT%H:%M:%SZ")}

    def drain(self, on_batch: Callable[[BatchOutcome], None] | None = None) -> DrainReport:
        """Run everything queued until the pipeline is idle (with the run's bounds)."""
        self._sync_chartmogul_clock()
        return self.stack.drain(
            max_batches=self.options.max_batches, timeout_seconds=self.options.drain_timeout_s, on_batch=on_batch
        )

    # ---- scenario changes ------------------------------------------------------------------------------

    def apply_steps(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply scenario steps at the Stripe emulator's clock; steps that do not fit a customer are reported."""
        results: list[dict[str, Any]] = []
        for step in steps:
            try:
                results.append({"step": step, "result": self.stripe.apply_step(step)})
            except ValueError as error:
                results.append({"step": step, "error": str(error)})
        self._sync_chartmogul_clock()
        return results

    def apply_demo_changes(self, per_kind: int = 2) -> list[dict[str, Any]]:
        """A round of changes in Stripe touching several scenarios, each on a different customer.

        For each kind of change the customers paying for a live subscription are tried in a seeded order until
        the change applies (a Starter customer has no plan to downgrade to); a kind no customer fits is reported.
        """
        candidates = self.stripe.active_subscribers()
        kinds: list[tuple[str, dict[str, Any], int]] = [
            ("upgrade", {}, per_kind),
            ("downgrade", {}, per_kind),
            ("change_quantity", {"quantity": 7}, per_kind),
            ("refund", {"share": 0.5}, per_kind),
            ("credit_note", {"share": 0.25}, per_kind),
            ("cancel_at_period_end", {}, per_kind),
            ("cancel", {}, per_kind),
            ("pause_collection", {}, 1),
            ("delete_customer", {}, 1),
        ]
        touched: set[str] = set()
        results: list[dict[str, Any]] = []
        for kind, extra, wanted in kinds:
            applied = 0
            for customer in candidates:
                if applied == wanted:
                    break
                if customer in touched:
                    continue
                step = {"kind": kind, "customer": customer, **extra}
                try:
                    results.append({"step": step, "result": self.stripe.apply_step(step)})
                except ValueError:
                    continue  # this change does not fit this customer: try the next one
                touched.add(customer)
                applied += 1
            if applied < wanted:
                results.append({"step": {"kind": kind}, "error": f"applied to {applied} of {wanted} customers"})
        results.extend(
            self.apply_steps(
                [
                    {"kind": "new_customer", "plan": "Pro", "interval": "monthly", "currency": "usd"},
                    {"kind": "new_customer", "plan": "Starter", "interval": "yearly", "currency": "eur"},
                    {"kind": "advance", "days": 2},
                ]
            )
        )
        self._sync_chartmogul_clock()
        return results

    def stop_faults(self) -> None:
        """Switch off injected faults on both emulators (what happened so far keeps its counts)."""
        self.stripe.set_faults(None)
        self.chartmogul.set_faults(None)

    # ---- what happened -----------------------------------------------------------------------------------

    def stripe_request_total(self) -> int:
        return int(self.stripe.request_report()["total"])

    def chartmogul_request_total(self) -> int:
        return int(self.chartmogul.request_counts()["total"])

    def chartmogul_writes(self) -> int:
        """Successful writes ChartMogul has accepted so far (any 2xx answer to a method other than GET)."""
        routes: dict[str, dict[str, int]] = self.chartmogul.request_counts()["routes"]
        return sum(
            count
            for route, statuses in routes.items()
            if not route.startswith("GET ")
            for status, count in statuses.items()
            if status.startswith("2")
        )

    def dead_letters(self) -> dict[str, list[str]]:
        """The bodies of every message in each terminal queue, read without removing them."""
        queues = [*DEAD_LETTER_QUEUES, *(q for q in OPTIONAL_DEAD_LETTER_QUEUES if q in self.stack.template.queues)]
        return {queue: peek_queue(self.stack.clients.sqs, self.stack.queue_url(queue)) for queue in queues}

    def chartmogul_data_source_uuid(self) -> str | None:
        import chartmogul

        from chartmogul_sync.config import get_settings

        name = self.stack.environment.get("CHARTMOGUL_DATA_SOURCE_NAME") or get_settings().chartmogul_data_source_name
        sources = chartmogul.DataSource.all(self.chartmogul.client_config()).get().data_sources
        return next((source.uuid for source in sources if source.name == name), None)


def peek_queue(sqs: Any, url: str, max_messages: int = 10_000) -> list[str]:
    """Every body in the queue, oldest first; the messages are made visible again at once, so nothing moves.

    Each receive hides what it returned (visibility 60 s) so the next one reaches further; at the end all are
    put back with visibility 0. Receive counts go up, which matters only on queues with a redrive policy: use
    it on terminal queues.
    """
    bodies: list[str] = []
    handles: list[str] = []
    while len(bodies) < max_messages:  # bounded by max_messages
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        if not messages:
            break
        bodies.extend(m["Body"] for m in messages)
        handles.extend(m["ReceiptHandle"] for m in messages)
    for start in range(0, len(handles), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for index, handle in enumerate(handles[start : start + 10])
            ],
        )
    return bodies


def _function_figures(drained: DrainReport) -> dict[str, FunctionFigures]:
    figures: dict[str, FunctionFigures] = {}
    distinct: dict[str, set[str]] = {}
    for batch in drained.batches:
        entry = figures.setdefault(batch.function, FunctionFigures())
        if batch.throttled:  # not an invocation: no handler ran, and its messages went back to the queue
            entry.throttled += 1
            continue
        entry.invocations += 1
        entry.deliveries += len(batch.message_ids)
        entry.failed += len(batch.failed_ids)
        entry.seconds += batch.duration_s
        distinct.setdefault(batch.function, set()).update(batch.message_ids)
    for function, message_ids in distinct.items():
        figures[function].records = len(message_ids)
    for invocation in drained.async_invocations:
        entry = figures.setdefault(invocation.function, FunctionFigures())
        entry.invocations += invocation.attempts
    return figures
