"""Audit function: the daily audit of ChartMogul against Stripe (chartmogul_sync.audit), on a schedule.

The handler only wires: it runs the same audit as `cmsync audit --stack` (the deployed accounts, the stack's
state table and dead-letter queues), writes the full report to the staging bucket (`audit/YYYY/MM/DD/….json`) and
publishes the drift as metrics in the `ChartMogulSync` namespace: `AuditCustomersDiffering` (customers with a
difference that is drift), `AuditMrrDifference` (ChartMogul's MRR minus Stripe's at the latest month, cents, its
absolute value), `AuditDifferences` and `AuditMatches` (1 or 0). The template's drift alarm watches the first.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from chartmogul_sync.audit.service import AuditRequest, run_audit
from chartmogul_sync.config import get_settings
from chartmogul_sync.sinks.chartmogul.client import ChartMogulApi, read_api_key
from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter
from chartmogul_sync.sources.stripe.client import (
    StripeApi,
    TimeBudget,
    api_key_from_secrets_manager,
    make_stripe_client,
    stripe_request_limiter,
)
from chartmogul_sync.state import StateTable
from chartmogul_sync.transform.config import load_mapping_config

logger = Logger()
metrics = Metrics(namespace="ChartMogulSync")
tracer = Tracer()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    stripe_key = str(api_key_from_secrets_manager(settings.stripe_secret_name)).strip()
    request = AuditRequest(
        config=load_mapping_config(settings.mapping_config_path),
        rates=json.loads(settings.audit_exchange_rates) if settings.audit_exchange_rates else None,
        account_currency=settings.account_currency,
    )
    report = run_audit(
        request,
        # Its own part of the Stripe budget (STRIPE_AUDIT_SHARE): the export may be running at the same time.
        stripe_api=StripeApi(
            make_stripe_client(settings, stripe_key),
            TimeBudget.from_lambda_context(context),
            limiter=stripe_request_limiter(settings, stripe_key, audit=True),
        ),
        chartmogul_api=ChartMogulApi(read_api_key(settings), settings, ChartMogulLimiter.share_of_account(settings)),
        settings=settings,
        state=StateTable(boto3.resource("dynamodb"), settings.state_table),
        sqs=boto3.client("sqs"),
    )
    key = f"audit/{report.generated_at:%Y/%m/%d/%H%M%S}.json"
    boto3.client("s3").put_object(
        Bucket=settings.staging_bucket, Key=key, Body=report.to_json().encode(), ContentType="application/json"
    )
    metrics.add_metric(name="AuditCustomersDiffering", unit=MetricUnit.Count, value=len(report.customers_differing))
    metrics.add_metric(name="AuditMrrDifference", unit=MetricUnit.Count, value=abs(report.mrr_difference))
    metrics.add_metric(name="AuditDifferences", unit=MetricUnit.Count, value=len(report.differences))
    metrics.add_metric(name="AuditMatches", unit=MetricUnit.Count, value=int(report.matches))
    logger.info("audit finished", extra={"report": key, **report.summary()})
    return {"report": key, **report.summary()}
