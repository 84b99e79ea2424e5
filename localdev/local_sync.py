"""`cmsync sync --local`: the three real handlers on this machine against the user's Stripe and ChartMogul.

The stack of template.yaml runs in moto through the local runtime (`local_stack`, `drain`), exactly as the demo
runs it, but against the configured accounts (STRIPE_API_BASE / CHARTMOGUL_API_URL or the real APIs) with the
user's keys in the stack's secrets. The sync state survives between runs in a state directory:

- `state.json`: every item of the DynamoDB state table (incremental cursor, id map, applied versions, backfill
  checkpoints), loaded into the table before the run and written back after it (also after a failed run, so a
  crashed backfill resumes from its checkpoint);
- `dead-letters.json`: what waits in the bad-records queue and the DLQs, put back in them before the next run,
  as a deployed stack would keep them.
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

from chartmogul_sync.ops.accounts import Accounts
from chartmogul_sync.ops.stack import (
    QUEUES,
    TERMINAL_QUEUES,
    load_dead_letters,
    load_state_items,
    save_dead_letters,
    save_state_items,
)
from chartmogul_sync.sinks.chartmogul.dlq import list_messages
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
    dead_letters: list[dict[str, str]] = field(default_factory=list)  # {queue, id, body}
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
        table = boto3.resource("dynamodb", endpoint_url=stack.endpoint_url).Table(stack.resource_name("StateTable"))
        for item in load_state_items(state_dir):
            table.put_item(Item=_to_dynamo(item))
        for queue, message in load_dead_letters(state_dir):
            stack.send(QUEUES[queue], message.body)
        started = time.monotonic()
        try:
            with _export_continues_locally(stack):
                result = stack.invoke("ExportFunction", event)
                drained = stack.drain(max_batches=max_batches, timeout_seconds=drain_timeout_s, on_batch=on_batch)
        finally:
            items = [_from_dynamo(item) for item in _scan(table)]
            save_state_items(state_dir, items)
            letters = _terminal_messages(stack)
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


def _terminal_messages(stack: LocalStack) -> list[dict[str, str]]:
    letters = []
    for queue in TERMINAL_QUEUES:
        if QUEUES[queue] not in stack.template.queues:
            continue  # an optional queue the local stack does not create (the Stripe events DLQ)
        url = stack.queue_url(QUEUES[queue])
        for message in list_messages(stack.clients.sqs, url, max_messages=10_000):
            letters.append({"queue": queue, "id": message.message_id, "body": message.body})
    return letters
