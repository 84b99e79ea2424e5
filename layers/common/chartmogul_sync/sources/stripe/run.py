"""What every export mode shares: its dependencies, its counters, how it sends snapshots and how it reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import stripe
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from ...config import Settings
from ...models.envelope import RawMessage
from ...models.snapshot import CustomerSnapshot
from ...queues import BadRecord, BadRecords, MessageSender, Stage
from ...state import StateTable
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


@dataclass
class ExportStats:
    objects_listed: int = 0
    customers_enqueued: int = 0
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
        """
        messages = (
            RawMessage(
                customer_external_id=snapshot.customer_id,
                snapshot_time=snapshot_time,
                correlation_id=self.run_id,
                payload=snapshot,
                upload_mode=upload_mode,
            )
            for snapshot, snapshot_time in snapshots
        )
        sent = self.sender.send(self.settings.raw_queue_url, messages)
        self.stats.customers_enqueued += sent
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
