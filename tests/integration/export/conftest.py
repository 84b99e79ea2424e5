"""The export function as it runs locally: template.yaml's stack in moto, the Stripe emulator on loopback serving
a generated account, the real handler invoked with Lambda's event and context through the local runtime, and
continuations run the way Lambda runs an asynchronous invocation (one after the other, each a new invocation).

A test module provides the `account` fixture (its size, seed and scope are the module's choice); the `emulator`
serving it and the `rig` around the emulator are defined here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from chartmogul_sync.config import STRIPE_API_VERSION, Settings, get_settings
from chartmogul_sync.models.envelope import RawMessage
from chartmogul_sync.models.snapshot import CustomerSnapshot
from chartmogul_sync.queues import load_message
from chartmogul_sync.sources.stripe.client import RetryPolicy, StripeApi, TimeBudget, make_stripe_client
from chartmogul_sync.sources.stripe.run import Continuation, ExportLimits
from chartmogul_sync.sources.stripe.snapshots import Catalog, fetch_customer_snapshot
from chartmogul_sync.sources.stripe.wiring import export_wiring
from localdev.aws.poller import PollerOptions
from localdev.aws.runtime import LocalStack, local_stack
from localdev.scenarios import Account
from localdev.stripe_emulator import RunningStripeEmulator, start

STRIPE_KEY = "sk_test_chartmogul_sync_export"
# Retries as in production, with waits in milliseconds: the tests are about what is retried, not how long.
FAST_RETRIES = RetryPolicy(max_attempts=12, base_wait_s=0.002, max_wait_s=0.02, reserve_s=0.0)
# A bound on every chain of continuations a test runs (a run that never finishes fails the test).
MAX_INVOCATIONS = 400


@dataclass
class ExportRig:
    stack: LocalStack
    emulator: RunningStripeEmulator
    continuations: list[Continuation] = field(default_factory=list)
    invocations: int = 0
    # Raw messages taken off the queue after each invocation (moto's SQS slows down as a queue grows): the
    # snapshots in `raw_messages`, a backfill's customer heads apart in `customer_heads`.
    raw_messages: list[RawMessage] = field(default_factory=list)
    customer_heads: list[RawMessage] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(**{k.lower(): v for k, v in self.environment.items() if k.lower() in Settings.model_fields})

    @property
    def environment(self) -> dict[str, str]:
        return self.stack.function("ExportFunction").environment

    def invoke(self, event: dict[str, Any], function: str = "ExportFunction") -> dict[str, Any]:
        """One invocation of the export function, or of another (the Stripe events function), synchronous: its
        exception propagates."""
        get_settings.cache_clear()  # each test's stack is new; the handler reads settings once per process
        self.invocations += 1
        outcome: dict[str, Any] = self.stack.invoke(function, event)
        return outcome

    def run(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Invoke, then every continuation the run hands over to, until it finishes; the outcomes in order.

        The raw messages each invocation sent are collected in `raw_messages`.
        """
        outcomes = [self.invoke(event)]
        self.raw_messages.extend(self.take_raw_messages())
        while self.continuations:
            assert self.invocations < MAX_INVOCATIONS, "the run keeps handing over and never finishes"
            outcomes.append(self.invoke(self.continuations.pop(0).model_dump(mode="json")))
            self.raw_messages.extend(self.take_raw_messages())
        return outcomes

    def take_raw_messages(self) -> list[RawMessage]:
        """Every snapshot on the raw queue now, received and deleted, claim checks resolved; the customer heads
        among them are kept in `customer_heads`."""
        sqs, s3 = self.stack.clients.sqs, self.stack.clients.s3
        queue_url = self.stack.queue_url("RawQueue")
        messages: list[RawMessage] = []
        for _ in range(100_000):  # bounded: a queue that never empties fails the test below
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                raw = load_message(s3, message["Body"], RawMessage)
                assert raw.payload is not None
                (self.customer_heads if raw.payload.customer_only else messages).append(raw)
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        raise AssertionError("the raw queue never emptied")

    def state_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        answer = self.stack.clients.dynamodb.get_item(
            TableName=self.environment["STATE_TABLE"], Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def stripe_api(self, policy: RetryPolicy = FAST_RETRIES) -> StripeApi:
        """The exporter's Stripe adapter, outside any invocation: to fetch customers directly."""
        client = make_stripe_client(self.settings, STRIPE_KEY)
        return StripeApi(client, TimeBudget.of_seconds(600), policy)

    def direct_snapshots(self, customer_ids: Iterable[str]) -> dict[str, str]:
        """Customer id -> snapshot JSON as fetching each customer on its own gives (the one-customer and
        incremental path): what every export mode must send for that customer."""
        api = self.stripe_api()
        catalog = Catalog(api)
        return {
            customer_id: payload_json(fetch_customer_snapshot(api, catalog, customer_id))
            for customer_id in customer_ids
        }

    def stripe_requests(self) -> int:
        return self.emulator.server.counter.total()

    def list_requests(self, status: int | None = 200) -> dict[str, int]:
        """Answered list-page requests by route (`GET /v1/invoices`, ...)."""
        counts = self.emulator.server.counter.snapshot()
        return {
            route: sum(n for s, n in by_status.items() if status is None or s == str(status))
            for route, by_status in counts.items()
            if route.startswith("GET /v1/") and "{" not in route
        }


@pytest.fixture
def emulator(account: Account) -> Iterator[RunningStripeEmulator]:
    with serve(account) as running:
        yield running


@pytest.fixture
def rig(emulator: RunningStripeEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExportRig]:
    yield from make_rig(emulator, monkeypatch)


# The stack with the near-real-time path: the Stripe events function and its queue (`make_rig(stripe_events=True)`).
STRIPE_EVENTS = {"StripePartnerEventSourceName": "aws.partner/stripe.com/ed_test_export_rig"}


def make_rig(
    emulator: RunningStripeEmulator, monkeypatch: pytest.MonkeyPatch, *, stripe_events: bool = False
) -> Iterator[ExportRig]:
    options = PollerOptions(wait_for_batching_window=False, failed_record_visibility_timeout=0)
    with local_stack(options=options, parameters=STRIPE_EVENTS if stripe_events else None) as stack:
        stack.put_secret_value("StripeApiKeySecret", STRIPE_KEY)
        # The exporters' Stripe budget is a share of Stripe's limit; the emulator's is Stripe's here (none by default).
        stripe_limit = emulator.server.bucket.rate or 100_000
        for function in ("ExportFunction", "StripeEventsFunction") if stripe_events else ("ExportFunction",):
            stack.function(function).environment["STRIPE_API_BASE"] = emulator.base_url
            stack.function(function).environment["STRIPE_RATE_LIMIT_PER_SECOND"] = str(stripe_limit)
        rig = ExportRig(stack, emulator)
        # Moto cannot run Lambda code: a continuation is queued here and run by `ExportRig.run`, as Lambda
        # would run the asynchronous invocation.
        monkeypatch.setattr(
            export_wiring, "continuation", lambda continuation, _context: rig.continuations.append(continuation)
        )
        monkeypatch.setattr(export_wiring, "clock", lambda: datetime.fromtimestamp(emulator.store.now, UTC))
        monkeypatch.setattr(export_wiring, "retry_policy", FAST_RETRIES)
        monkeypatch.setattr(export_wiring, "limits", ExportLimits())
        yield rig


def serve(account: Any, **options: Any) -> RunningStripeEmulator:
    return start(account, rate_limit=options.pop("rate_limit", None), **options)


def snapshot_json(message: RawMessage) -> str:
    """The payload alone: what the snapshot says about the customer, whatever run or time produced it."""
    assert message.payload is not None
    return payload_json(message.payload)


def payload_json(snapshot: CustomerSnapshot) -> str:
    assert snapshot.api_version == STRIPE_API_VERSION
    return json.dumps(snapshot.model_dump(mode="json"), sort_keys=True)


def by_customer(messages: list[RawMessage]) -> dict[str, str]:
    """Customer id -> snapshot JSON; a customer sent twice must have been sent the same snapshot."""
    found: dict[str, str] = {}
    for message in messages:
        body = snapshot_json(message)
        previous = found.setdefault(message.customer_external_id, body)
        assert previous == body, f"{message.customer_external_id} was sent two different snapshots"
    return found
