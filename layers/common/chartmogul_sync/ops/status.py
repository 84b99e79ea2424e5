"""`cmsync status`: what a sync is doing, from its state table and its queues.

The incremental cursor (the newest Stripe event handled) and its age, the last run of each export mode (when it
started and ended, its outcome and why it failed, customers exported: sources/stripe/run.py RunRecord), each
backfill run's checkpoint (progress, finished or not), queue and dead-letter depths (the Stripe events queue and
its DLQ too, with the near-real-time path, and the failed scheduled audits of audit-failed), how long the oldest
message of each work queue has waited, and the states of the incremental schedule and of the daily audit's
schedule.
Healthy means: nothing waits in a dead-letter-class queue (dlq.py QUEUE_NAMES, audit-failed included), no mode's
last run failed, and the cursor is younger than Stripe's 30-day event retention (older, and an incremental run
must rescan: sources/stripe/incremental.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from ..sources.stripe.backfill import Checkpoint
from ..sources.stripe.incremental import CURSOR_PK, CURSOR_SK, EVENT_RETENTION_S, EventCursor
from ..sources.stripe.run import RUN_MODES, RunRecord, last_runs
from ..state import StateTable
from .stack import TERMINAL_QUEUES


@dataclass
class SyncStatus:
    cursor: dt.datetime | None
    cursor_age_s: float | None
    backfills: list[dict[str, Any]] = field(default_factory=list)
    last_runs: dict[str, RunRecord] = field(default_factory=dict)  # by mode
    queue_depths: dict[str, int] = field(default_factory=dict)
    schedule: str = ""
    audit_schedule: str = ""
    # Work queue → seconds its oldest message has waited (None: no recent CloudWatch figure).
    oldest_message_ages: dict[str, float | None] = field(default_factory=dict)

    @property
    def waiting(self) -> int:
        return sum(depth for queue, depth in self.queue_depths.items() if queue in TERMINAL_QUEUES)

    @property
    def healthy(self) -> bool:
        stale = self.cursor_age_s is not None and self.cursor_age_s > EVENT_RETENTION_S
        failed = any(run.outcome == "failed" for run in self.last_runs.values())
        return not self.waiting and not stale and not failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "incremental_cursor": self.cursor.isoformat() if self.cursor else None,
            "cursor_age_seconds": round(self.cursor_age_s) if self.cursor_age_s is not None else None,
            "last_runs": {mode: run.model_dump(mode="json") for mode, run in self.last_runs.items()},
            "backfills": self.backfills,
            "queue_depths": self.queue_depths,
            "oldest_message_age_seconds": {
                queue: round(age) if age is not None else None for queue, age in self.oldest_message_ages.items()
            },
            "schedule": self.schedule,
            "audit_schedule": self.audit_schedule,
        }

    def print(self, console: Console) -> None:
        table = Table(title="cmsync status")
        table.add_column("what")
        table.add_column("state")
        if self.cursor is None:
            table.add_row("incremental cursor", "none yet (run a backfill first)")
        else:
            age = dt.timedelta(seconds=round(self.cursor_age_s or 0))
            table.add_row("incremental cursor", f"{self.cursor:%Y-%m-%d %H:%M:%S} UTC ({age} ago)")
        if not self.last_runs:
            table.add_row("last run", "none recorded")
        for mode, last in self.last_runs.items():
            table.add_row(f"last {mode} run", _describe_run(last))
        for run in self.backfills:
            state = "finished" if run["finished"] else "in progress or stopped"
            table.add_row(
                f"backfill {run['run_id']}",
                f"{state}: started {run['started_at']}, {run['customer_heads_sent']} customer heads sent, "
                f"{run['customers_enqueued']} customers enqueued, {run['objects_listed']} objects listed",
            )
        for queue, depth in sorted(self.queue_depths.items()):
            style = "red" if queue in TERMINAL_QUEUES and depth else ""
            text = f"[{style}]{depth}[/{style}]" if style else str(depth)
            if queue in self.oldest_message_ages:
                oldest = self.oldest_message_ages[queue]
                text += (
                    f", oldest {dt.timedelta(seconds=round(oldest))} old"
                    if oldest is not None
                    else ", oldest: no figure"
                )
            table.add_row(f"queue {queue}", text)
        table.add_row("schedule", self.schedule)
        if self.audit_schedule:
            table.add_row("audit schedule", self.audit_schedule)
        console.print(table)
        verdict = "[green]healthy[/green]" if self.healthy else "[red]needs attention[/red]"
        console.print(f"Sync: {verdict}")


def _describe_run(run: RunRecord) -> str:
    seconds = (run.finished_at - run.started_at).total_seconds()
    outcome = {"ok": "[green]ok[/green]", "continuing": "continuing", "failed": "[red]failed[/red]"}[run.outcome]
    text = (
        f"{outcome}: {run.run_id}, {run.started_at:%Y-%m-%d %H:%M:%S} UTC, {seconds:.0f} s, "
        f"{run.customers_exported} customers exported"
    )
    if run.customers_set_aside:
        text += f", {run.customers_set_aside} set aside"
    return f"{text} ({run.reason})" if run.reason else text


def sync_status(
    state: StateTable,
    *,
    queue_depths: Mapping[str, int],
    schedule: str,
    audit_schedule: str = "",
    oldest_message_ages: Mapping[str, float | None] | None = None,
    now: dt.datetime | None = None,
) -> SyncStatus:
    now = now or dt.datetime.now(dt.UTC)
    item = state.get(CURSOR_PK, CURSOR_SK)
    cursor = None
    if item is not None:
        cursor = dt.datetime.fromtimestamp(EventCursor.model_validate_json(item["cursor"]).created, dt.UTC)
    backfills = []
    for checkpoint_item in _backfill_checkpoints(state):
        checkpoint = Checkpoint.model_validate_json(checkpoint_item["checkpoint"])
        backfills.append(
            {
                "run_id": checkpoint.run_id,
                "started_at": checkpoint.started_at.isoformat(),
                "finished": checkpoint.finished,
                "customers_enqueued": checkpoint.customers_enqueued,
                "customer_heads_sent": checkpoint.customer_heads_sent,
                "objects_listed": checkpoint.objects_listed,
            }
        )
    return SyncStatus(
        cursor=cursor,
        cursor_age_s=(now - cursor).total_seconds() if cursor else None,
        backfills=sorted(backfills, key=lambda run: str(run["started_at"])),
        last_runs={mode: run for mode, run in sorted(last_runs(state).items(), key=lambda m: RUN_MODES.index(m[0]))},
        queue_depths=dict(queue_depths),
        schedule=schedule,
        audit_schedule=audit_schedule,
        oldest_message_ages=dict(oldest_message_ages or {}),
    )


def _backfill_checkpoints(state: StateTable) -> list[dict[str, Any]]:
    # The checkpoints only (their partition key starts with "backfill#"): a scan of a deployed table.
    items = state.scan("backfill#")
    return [i for i in items if str(i.get("pk", "")).startswith("backfill#") and i.get("sk") == "checkpoint"]
