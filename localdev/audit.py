"""The product's audit (`chartmogul_sync.audit`) run on a local pipeline, with the generator's ground truth.

The audit itself is product code; this only wires it to a `LocalPipeline`: the emulators' URLs and keys, the
stack's state table and queues, the Stripe emulator's clock and the ChartMogul emulator's exchange rates, and
(for the demo) the generator's ground truth as a further input, checked month by month and object by object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3

from chartmogul_sync.audit.report import AuditReport
from chartmogul_sync.audit.service import AuditRequest, run_audit
from chartmogul_sync.config import Settings
from chartmogul_sync.sinks.chartmogul.client import ChartMogulApi
from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter
from chartmogul_sync.sources.stripe.client import StripeApi, TimeBudget, make_stripe_client
from chartmogul_sync.state import StateTable
from chartmogul_sync.transform.config import MappingConfig

if TYPE_CHECKING:
    from localdev.pipeline import LocalPipeline


def pipeline_settings(pipeline: LocalPipeline) -> Settings:
    """The settings the stack's Audit function runs with (the template's Globals and its own environment, plus the
    emulators' URLs): the demo's audit reads the queues the deployed one reads."""
    audit_function = pipeline.stack.function("AuditFunction")
    environment = {name.lower(): value for name, value in audit_function.environment.items()}
    return Settings.model_validate(environment)


def audit_pipeline(
    pipeline: LocalPipeline,
    truth: Mapping[str, Any] | None = None,
    *,
    customers: list[str] | None = None,
    config: MappingConfig | None = None,
) -> AuditReport:
    """Audit what the pipeline imported, as `cmsync audit` would with the stack's state and queues."""
    from localdev.pipeline import STRIPE_TEST_KEY

    # The audit measures the pipeline, not its own retries: it reads with injected faults off.
    pipeline.stop_faults()
    settings = pipeline_settings(pipeline)
    stripe_api = StripeApi(make_stripe_client(settings, STRIPE_TEST_KEY), TimeBudget.of_seconds(3600))
    chartmogul_api = ChartMogulApi(pipeline.chartmogul.api_key, settings, ChartMogulLimiter.share_of_account(settings))
    months = list(truth["months"]) if truth is not None else []
    request = AuditRequest(
        customers=customers,
        from_month=months[0] if months else None,
        to_month=months[-1] if months else None,
        config=config or MappingConfig(),
        rates=dict(pipeline.chartmogul.options.rates),
        truth=truth,
    )
    dynamodb = boto3.resource("dynamodb", endpoint_url=pipeline.stack.endpoint_url)
    return run_audit(
        request,
        stripe_api=stripe_api,
        chartmogul_api=chartmogul_api,
        settings=settings,
        state=StateTable(dynamodb, settings.state_table),
        sqs=pipeline.stack.clients.sqs,
        now=pipeline.stripe_now(),
    )
