"""`cmsync sync --local`: the three real handlers on this machine against the user's Stripe and ChartMogul.

The stack of template.yaml runs in moto through the local runtime (`local_stack`, `drain`), exactly as the demo
runs it, but against the configured accounts (STRIPE_API_BASE / CHARTMOGUL_API_URL or the real APIs) with the
user's keys in the stack's secrets. The sync state survives between runs in a state directory:

- `state.json`: every item of the DynamoDB state table (incremental cursor, id map, applied versions, backfill
  checkpoints), loaded into the table before the run and written back after it (also after a failed run, so a
  crashed backfill resumes from its checkpoint);
- `dead-letters.json`: what waits in each terminal queue (bad-records, the DLQs, export-failed, schedule-dlq,
  audit-failed: dlq.py QUEUE_NAMES), each record with its customer and its reason as `cmsync dlq list` gives
  them (an audit-failed record as a failed audit, a DLQ record with the last failure its function recorded), put
  back in them before the next run, as a deployed stack would keep them; the recorded failure follows the record
  to its new message id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import boto3

from chartmogul_sync.failures import FAILURE_SK, FailureLedger
from chartmogul_sync.ops.accounts import Accounts
from chartmogul_sync.ops.stack import (
    QUEUES,
    TERMINAL_QUEUES,
    DeadLetter,
    dead_letter,
    load_dead_letters,
    load_state_items,
    save_dead_letters,
    save_state_items,
)
from chartmogul_sync.sinks.chartmogul.dlq import failed_function_of, list_messages
from chartmogul_sync.state import StateTable
from localdev.aws.poller import BatchOutcome, PollerOptions
from localdev.aws.runtime import LocalStack, local_stack
from localdev.pipeline import FunctionFigures, _function_figures

SyncMode = Literal["backfill", "incremental", "customer"]


@dataclass
class LocalSyncResult:
    mode: SyncMode
    seconds: float
    export_result: Any
    functions: dict[str, FunctionFigures]
    dead_letters: list[DeadLetter] = field(default_factory=list)  # {queue, id, body, customer_external_id, reason}
    state_items: int = 0


def export_event(mode: SyncMode, customer: str | None, now: datetime) -> dict[str, Any]:
    if mode == "customer":
        if not customer:
            raise ValueError("--mode customer needs --customer ID")
        return {"mode": "customer", "customer_id": customer}
    if mode == "incremental":
        return {"mode": "incremental", "scheduled_time": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"mode": "backfill"}


def run_local_sync(
    accounts: Accounts,
    mode: SyncMode,
    *,
    state_dir: Path,
    customer: str | None = None,
    mapping_config: str | None = None,
    on_batch: Callable[[BatchOutcome], None] | None = None,
    drain_timeout_s: float = 3600.0,
    max_batches: int = 100_000,
) -> LocalSyncResult:
    settings = accounts.settings
    environment = {
        "CHARTMOGUL_API_URL": settings.chartmogul_api_url,
        "CHARTMOGUL_DATA_SOURCE_NAME": settings.chartmogul_data_source_name,
        # One local poller is one upload instance: it takes the account's whole ChartMogul budget.
        "UPLOAD_MAX_CONCURRENCY": "1",
        **({"STRIPE_API_BASE": settings.stripe_api_base} if settings.stripe_api_base else {}),
        **({"MAPPING_CONFIG_PATH": mapping_config} if mapping_config else {}),
    }
    event = export_event(mode, customer, datetime.now(UTC))
    options = PollerOptions(wait_for_batching_window=False, failed_record_visibility_timeout=0)
    with local_stack(options=options, environment=environment) as stack:
        stack.put_secret_value("StripeApiKeySecret", accounts.stripe_key)
        stack.put_secret_value("ChartMogulApiKeySecret", accounts.chartmogul_key)
        dynamodb = boto3.resource("dynamodb", endpoint_url=stack.endpoint_url)
        table = dynamodb.Table(stack.resource_name("StateTable"))
        for item in load_state_items(state_dir):
            table.put_item(Item=_to_dynamo(item))
        state = StateTable(dynamodb, stack.resource_name("StateTable"))
        ledger = FailureLedger(state)
        for queue, message in load_dead_letters(state_dir):
            message_id = stack.send(QUEUES[queue], message.body)
            if message.failure is not None:  # the ledger is keyed by message id: the reason moves with the record
                ledger.record(message.failure.model_copy(update={"message_id": message_id}))
                state.delete(FailureLedger.partition_key(message.message_id), FAILURE_SK)
        started = time.monotonic()
        try:
            with _export_continues_locally(stack):
                result = stack.invoke("ExportFunction", event)
                drained = stack.drain(max_batches=max_batches, timeout_seconds=drain_timeout_s, on_batch=on_batch)
        finally:
            items = [_from_dynamo(item) for item in _scan(table)]
            save_state_items(state_dir, items)
            letters = _terminal_messages(stack, ledger)
            save_dead_letters(state_dir, letters)
        figures = _function_figures(drained)
        export = figures.setdefault("ExportFunction", FunctionFigures())
        export.invocations += 1
        export.records = figures.get("TransformFunction", FunctionFigures()).records
        return LocalSyncResult(mode, time.monotonic() - started, result, figures, letters, len(items))


class _export_continues_locally:
    """The export hands a long run over to an asynchronous invocation of itself (sources/stripe/wiring.py):
    locally that is the runtime's `invoke_async`, run by `drain`."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack

    def __enter__(self) -> None:
        from chartmogul_sync.sources.stripe import wiring

        self._saved = wiring.export_wiring.continuation
        stack = self._stack
        wiring.export_wiring.continuation = lambda continuation, _context: stack.invoke_async(
            "ExportFunction", continuation.model_dump(mode="json")
        )

    def __exit__(self, *_exc: object) -> None:
        from chartmogul_sync.sources.stripe import wiring

        wiring.export_wiring.continuation = self._saved


def _scan(table: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    for _ in range(100_000):  # bounded: 1 MB pages
        page = table.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise RuntimeError("state table scan did not end")


def _from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (int(v) if v == v.to_integral_value() else float(v)) if isinstance(v, Decimal) else v
        for k, v in item.items()
    }


def _to_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: Decimal(str(v)) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in item.items()
    }


def _terminal_messages(stack: LocalStack, ledger: FailureLedger) -> list[DeadLetter]:
    """Every record of every terminal queue, read as `cmsync dlq list` reads each queue (dlq.list_messages with
    the queue's kind and the failure ledger), left in place."""
    letters = []
    for queue in TERMINAL_QUEUES:
        if QUEUES[queue] not in stack.template.queues:
            continue  # an optional queue the local stack does not create (the Stripe events DLQ)
        url = stack.queue_url(QUEUES[queue])
        for message in list_messages(
            stack.clients.sqs,
            url,
            max_messages=10_000,
            failures=ledger.last_failure,
            failed_function=failed_function_of(queue),
        ):
            letters.append(dead_letter(queue, message))
    return letters
