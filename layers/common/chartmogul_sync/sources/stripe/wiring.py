"""What the export handlers (the export function and the Stripe events function) take from their surroundings, in
one replaceable place, and the exporter both build from it (`build_exporter`).

In the cloud: the Stripe key from Secrets Manager, the wall clock, and continuations through Lambda's own
asynchronous invoke. Moto cannot run Lambda code (README "Running it locally"), so the local
runtime, tests and benchmarks replace the continuation (e.g. with the runtime's `invoke_async`) and the clock
(the Stripe emulator's). The handler module is imported under a per-runtime name; this module is the layer's,
shared by every importer, so a replacement here reaches the handler whatever its module is called.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from ...config import Settings
from ...queues import MessageSender
from ...state import StateTable
from .client import (
    RetryPolicy,
    StripeApi,
    TimeBudget,
    api_key_from_secrets_manager,
    make_stripe_client,
    stripe_request_limiter,
)
from .run import Continuation, Exporter, ExportLimits

ContinuationPort = Callable[[Continuation, Any], None]


def invoke_self_async(continuation: Continuation, context: Any, lambda_client: Any = None) -> None:
    """The cloud continuation: this same function, invoked asynchronously with the continuation event.

    Asynchronous, so this invocation ends now and the next one gets a full timeout; a failed continuation is
    retried by Lambda, then lands in the function's on-failure queue (template.yaml ExportFailedQueue).
    """
    if lambda_client is None:
        import boto3

        lambda_client = boto3.client("lambda")
    lambda_client.invoke(
        FunctionName=context.invoked_function_arn,
        InvocationType="Event",
        Payload=json.dumps(continuation.model_dump(mode="json")).encode(),
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ExportWiring:
    continuation: ContinuationPort = invoke_self_async
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    limits: ExportLimits = field(default_factory=ExportLimits)
    api_key: Callable[[str], str] = api_key_from_secrets_manager
    clock: Callable[[], datetime] = _utc_now


export_wiring = ExportWiring()


def build_exporter(
    settings: Settings,
    run_id: str,
    context: Any,
    log: Logger,
    *,
    realtime: bool = False,
    on_retry: Callable[[str, BaseException, float], None] | None = None,
) -> Exporter:
    """The exporter of one invocation, with its share of Stripe's rate limit: the Stripe events function's with
    `realtime`, else the export function's (`Settings.stripe_requests_per_second`), so that both functions at once
    keep to the share the user gave, which the user's own application shares."""
    import boto3

    budget = TimeBudget.from_lambda_context(context)
    api_key = export_wiring.api_key(settings.stripe_secret_name)
    client = make_stripe_client(settings, api_key)
    # Both functions ask several requests at once (ExportLimits): the export its lanes, the Stripe events function
    # its customers.
    limits = export_wiring.limits
    connections = limits.realtime_lanes if realtime else limits.stripe_lanes
    limiter = stripe_request_limiter(settings, api_key, realtime=realtime, connections=connections)
    api = StripeApi(client, budget, export_wiring.retry_policy, on_retry=on_retry, limiter=limiter)
    s3 = boto3.client("s3")
    return Exporter(
        api=api,
        sender=MessageSender(boto3.client("sqs"), s3, settings.staging_bucket),
        state=StateTable(boto3.resource("dynamodb"), settings.state_table),
        s3=s3,
        settings=settings,
        budget=budget,
        run_id=run_id,
        limits=export_wiring.limits,
        clock=export_wiring.clock,
        log=log,
    )


def run_metrics(exporter: Exporter) -> list[tuple[str, int]]:
    """The counts every export invocation publishes (namespace ChartMogulSync, service export;
    docs/operations.md), a failed one's too."""
    stats, requests = exporter.stats, exporter.api.stats
    return [
        ("ObjectsListed", stats.objects_listed),
        ("CustomersEnqueued", stats.customers_enqueued),
        ("CustomerHeadsSent", stats.customer_heads_sent),
        ("PagesStaged", stats.pages_staged),
        ("CustomersSetAside", stats.customers_set_aside),
        ("StripeRequests", requests.requests),
        ("StripeRetries", requests.retries),
        ("StripeAuthFailures", requests.auth_failures),
    ]
