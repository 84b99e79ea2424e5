"""What every export mode shares: its dependencies, its counters, how it sends snapshots and how it reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import stripe
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from ...config import Settings
from ...models.common import UtcDatetime
from ...models.envelope import RawMessage
from ...models.snapshot import CustomerSnapshot
from ...queues import BadRecord, BadRecords, MessageSender, Stage
from ...state import StateTable, key
from .client import StripeApi, TimeBudget, stripe_error_body

ExportMode = Literal["incremental", "backfill", "customer"]
UploadMode = Literal["api", "bulk"]
UploadModeHint = UploadMode | None


@dataclass(frozen=True)
class ExportLimits:
    # Hand over to a continuation when less than this is left: enough to finish the page or partition in
    # hand, write the checkpoint and invoke the continuation (the function's timeout is 900 s).
    handover_reserve_s: float = 90.0
    # Backfill: customers per staging partition. A partition is what one assembly step holds in memory, so
    # its size, not the account's, bounds the memory (docs/architecture.md "Export modes").
    customers_per_partition: int = 100
    # Backfill: staged objects are buffered per partition and written to S3 when the buffer reaches this
    # size; the checkpoint follows each write, so a crash redoes at most this much listing.
    flush_bytes: int = 4_000_000
    # Stripe requests side by side: the backfill's list windows (`windows.WindowedLists`) and its orphans, the
    # incremental run's customers (`lanes.in_order`). Stripe takes a few hundred milliseconds a request, so one lane
    # makes a few a second: 16 lanes at 300 ms keep up with the export's 45 requests/s
    # (`Settings.stripe_requests_per_second`). The export's Stripe limiter has as many connections.
    stripe_lanes: int = 16
    # The Stripe events function's customers side by side: a customer is 3 to 5 requests of a few hundred
    # milliseconds each, so one at a time would use a fraction of its 12.5 requests/s live per batch.
    realtime_lanes: int = 4


@dataclass
class ExportStats:
    objects_listed: int = 0
    customers_enqueued: int = 0
    customer_heads_sent: int = 0
    pages_staged: int = 0
    customers_set_aside: int = 0


@dataclass
class Exporter:
    """The dependencies of an export run; built by the handler (or a test, the command line, a benchmark)."""

    api: StripeApi
    sender: MessageSender
    state: StateTable
    s3: Any
    settings: Settings
    budget: TimeBudget
    run_id: str
    limits: ExportLimits = field(default_factory=ExportLimits)
    stats: ExportStats = field(default_factory=ExportStats)
    # "Now" for cursors, retention and snapshot times; the local runtime follows the Stripe emulator's clock.
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # The handler's logger (its correlation id is the run id). Passed in rather than a child logger: the local
    # runtime runs every function in one process, where a child logger would belong to whichever came first.
    log: Logger = field(default_factory=lambda: Logger(service="export"))

    def time_to_hand_over(self) -> bool:
        return self.budget.remaining_s() < self.limits.handover_reserve_s

    def send_snapshots(
        self, snapshots: Iterable[tuple[CustomerSnapshot, datetime]], *, upload_mode: UploadModeHint = None
    ) -> int:
        """Enqueue snapshots on the raw queue, 10 per SendMessageBatch, large ones through a claim check.

        `upload_mode` travels to the upload function: "bulk" for a backfill, None for its configured mode.
        Customer heads (`CustomerSnapshot.customer_only`) are sent the same way, and not counted as enqueued.
        """
        batch = list(snapshots)
        messages = (
            RawMessage(
                customer_external_id=snapshot.customer_id,
                snapshot_time=snapshot_time,
                correlation_id=self.run_id,
                payload=snapshot,
                upload_mode=upload_mode,
            )
            for snapshot, snapshot_time in batch
        )
        sent = self.sender.send(self.settings.raw_queue_url, messages)  # all of them, or QueueSendError
        heads = sum(1 for snapshot, _ in batch if snapshot.customer_only)
        self.stats.customers_enqueued += sent - heads
        self.stats.customer_heads_sent += heads
        return sent

    def set_aside_customer(self, customer_id: str, error: stripe.StripeError) -> BadRecord:
        """A customer Stripe refuses for good (`client.is_permanent_for_object`) goes to the bad-records queue,
        so the run can go on without it; its `original_body` is the one-customer event that exports it again.

        Without a bad-records queue there is nowhere to keep it: the error is raised and the run fails, rather
        than lose the customer.
        """
        queue_url = self.settings.bad_records_queue_url
        if not queue_url:
            raise error
        status = error.http_status
        message = error.user_message or str(error)
        reason = f"Stripe refused a request for customer {customer_id} for good (HTTP {status}): {message}"
        record = BadRecords(self.sender, queue_url, Stage.EXPORT).send(
            json.dumps({"mode": "customer", "customer_id": customer_id}),
            reason,
            object_id=customer_id,
            field=getattr(error, "param", None),
            customer_external_id=customer_id,
            correlation_id=self.run_id,
            error_body=stripe_error_body(error),
        )
        self.stats.customers_set_aside += 1
        self.log.error(
            "customer set aside: Stripe refuses it for good",
            extra={"customer_id": customer_id, "http_status": status, "reason": reason},
        )
        return record


class Continuation(BaseModel):
    """The event a run hands over with: the same function, invoked again, resumes the run."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["continuation"] = "continuation"
    resume: Literal["incremental", "backfill"]
    run_id: str


class ExportOutcome(BaseModel):
    """What a run did: the handler's return value and the source of its metrics."""

    model_config = ConfigDict(frozen=True)

    mode: ExportMode
    run_id: str
    finished: bool
    customers_enqueued: int
    continuation: Continuation | None = None
    detail: dict[str, Any] = {}


# -- the run record: what `cmsync status` shows as each mode's last run -----------------------------------------

RunMode = Literal["incremental", "backfill", "customer", "realtime"]
RUN_MODES: tuple[RunMode, ...] = ("incremental", "backfill", "customer", "realtime")
RUN_RECORD_PK = key("run", "last")  # sk: the mode (state.py's key layout)
_REASON_CHARS = 300


class RunRecord(BaseModel):
    """One invocation of an export function as it ended: stored per mode, the newest replacing the last.

    `outcome` is "ok" (the run finished, or had nothing to do), "continuing" (it handed over to a continuation
    before the time limit; the next invocation of the same run writes the next record) or "failed" (with the
    reason: an exception, or records a realtime batch could not export yet).
    """

    model_config = ConfigDict(frozen=True)

    mode: RunMode
    run_id: str
    started_at: UtcDatetime
    finished_at: UtcDatetime
    outcome: Literal["ok", "continuing", "failed"]
    reason: str | None = None
    customers_exported: int = 0
    customers_set_aside: int = 0
    stripe_requests: int = 0


@dataclass
class RunRecorder:
    """Filled in by the run (`outcome`, or `failed(reason)`); written when the `recorded_run` block ends."""

    mode: RunMode
    started_at: datetime
    outcome: Literal["ok", "continuing", "failed"] = "ok"
    reason: str | None = None

    def finished(self, outcome: ExportOutcome) -> None:
        if outcome.continuation is not None:
            self.outcome = "continuing"
        elif outcome.detail.get("superseded"):
            self.reason = "superseded: a newer backfill run holds the checkpoint"

    def failed(self, reason: str) -> None:
        self.outcome, self.reason = "failed", reason[:_REASON_CHARS]


@contextmanager
def recorded_run(exporter: Exporter, mode: RunMode) -> Iterator[RunRecorder]:
    """Record the run's end in the state table (`run#last`, sk the mode), however it ends.

    An exception is recorded as a failure and raised on. Writing the record never fails the run: a record that
    cannot be written is logged at WARNING (the run's own result, and its metrics, are what matter).
    """
    recorder = RunRecorder(mode, exporter.clock())
    try:
        yield recorder
    except Exception as error:
        recorder.failed(f"{type(error).__name__}: {error}")
        raise
    finally:
        record = RunRecord(
            mode=mode,
            run_id=exporter.run_id,
            started_at=recorder.started_at,
            finished_at=exporter.clock(),
            outcome=recorder.outcome,
            reason=recorder.reason,
            customers_exported=exporter.stats.customers_enqueued,
            customers_set_aside=exporter.stats.customers_set_aside,
            stripe_requests=exporter.api.stats.requests,
        )
        try:
            exporter.state.put(RUN_RECORD_PK, mode, {"run": record.model_dump_json()})
        except Exception as error:  # DynamoDB unreachable, say: the run stands, its record is lost
            exporter.log.warning("run record not written", extra={"mode": mode, "error": type(error).__name__})


def last_runs(state: StateTable) -> dict[str, RunRecord]:
    """The last run of each mode that has run, by mode."""
    return {
        str(item["sk"]): RunRecord.model_validate_json(item["run"])
        for item in state.query(RUN_RECORD_PK)
        if item.get("run")
    }
