"""Upload function: upload queue (customer bundles) → ChartMogul, in api or bulk mode.

The handler only wires. Every record is parsed first, so that the bulk-mode records of the batch can be imported
together (one `json_imports` request for many customers); then Powertools' batch processor settles each record:
api-mode records are applied side by side (one customer's in order), bulk-mode ones take their import's outcome.
Permanent refusals go to the bad-records queue inside `UploadService.settle`; a record that raises here failed
transiently and SQS retries it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chartmogul_sync.config import UploadMode, get_settings
from chartmogul_sync.failures import FailureReportingProcessor, RedeliveryBackoff
from chartmogul_sync.queues import Stage
from chartmogul_sync.sinks.chartmogul.client import TimeBudget, read_api_key
from chartmogul_sync.sinks.chartmogul.service import ParsedRecord, UploadService

logger = Logger()
metrics = Metrics(namespace="ChartMogulSync")
tracer = Tracer()
# Every failed record is logged at WARNING with its reason, which is kept for its dead letter, and comes back after
# a short, growing delay instead of the queue's 5,400 s visibility timeout (failures.py, RedeliveryBackoff).
processor = FailureReportingProcessor(Stage.UPLOAD, logger, backoff=RedeliveryBackoff())


@lru_cache(maxsize=1)
def upload_service(api_key: str) -> UploadService:
    """Built once per Lambda environment (and again only if the key in Secrets Manager changes)."""
    return UploadService.from_settings(
        get_settings(),
        api_key=api_key,
        dynamodb=boto3.resource("dynamodb"),
        s3=boto3.client("s3"),
        sqs=boto3.client("sqs"),
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = upload_service(read_api_key(get_settings()))
    budget = TimeBudget.from_lambda_context(context)
    requests_before, auth_failures_before = service.api.stats.requests, service.api.stats.auth_failures

    parsed: dict[str, ParsedRecord | Exception] = {}
    for raw in event.get("Records", []):
        try:
            parsed[raw["messageId"]] = service.parse(raw["messageId"], raw["body"])
        except Exception as error:  # raised again by this record's handler below: only this record fails
            parsed[raw["messageId"]] = error
    records = [p for p in parsed.values() if isinstance(p, ParsedRecord)]
    bulk_outcomes = {
        **service.apply_bulk([p for p in records if service.mode_of(p) is UploadMode.BULK], budget),
        # api-mode customers side by side, up to the instance's share of ChartMogul's connections
        **service.apply_api_many([p for p in records if service.mode_of(p) is UploadMode.API], budget),
    }

    @tracer.capture_method(capture_response=False)
    def record_handler(record: SQSRecord) -> None:
        item = parsed[record.message_id]
        if isinstance(item, Exception):
            raise item
        result = service.settle(item, budget, bulk_outcomes.get(record.message_id))
        metrics.add_metric(name=f"Bundles_{result.outcome.value}", unit=MetricUnit.Count, value=1)
        for kind, count in result.writes.items():
            metrics.add_metric(name=f"ChartMogul_{kind}", unit=MetricUnit.Count, value=count)

    try:
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:  # also when every record failed and the batch processor raises
        metrics.add_metric(
            name="ChartMogulRequests", unit=MetricUnit.Count, value=service.api.stats.requests - requests_before
        )
        # A refused key: the alarm ChartMogulAuthFailuresAlarm (template.yaml) fires on the first one.
        metrics.add_metric(
            name="ChartMogulAuthFailures",
            unit=MetricUnit.Count,
            value=service.api.stats.auth_failures - auth_failures_before,
        )
    return dict(response)
