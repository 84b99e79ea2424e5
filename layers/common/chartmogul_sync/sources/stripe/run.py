"""What every export mode shares: its dependencies, its counters, how it sends snapshots and how it reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict

from ...config import Settings
from ...models.envelope import RawMessage
from ...models.snapshot import CustomerSnapshot
from ...queues import MessageSender
from ...state import StateTable
from .client import StripeApi, TimeBudget

ExportMode = Literal["incremental", "backfill", "customer"]
UploadModeHint = Literal["api", "bulk"] | None


@dataclass(frozen=True)
class ExportLimits:
    # Hand over to a continuation when less than this is left: enough to finish the page or partition in
    # hand, write the checkpoint and invoke the continuation (the function's timeout is 900 s).
    handover_reserve_s: float = 90.0
    # Backfill: customers per staging partition. A partition is what one assembly step holds in memory, so
    # its size, not the account's, bounds the memory (DESIGN.md "Export modes").
    customers_per_partition: int = 100
    # Backfill: staged objects are buffered per partition and written to S3 when the buffer reaches this
    # size; the checkpoint follows each write, so a crash redoes at most this much listing.
    flush_bytes: int = 4_000_000


@dataclass
class ExportStats:
    objects_listed: int = 0
    customers_enqueued: int = 0
    pages_staged: int = 0


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
