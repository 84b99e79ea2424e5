"""Transform function: raw queue (customer snapshots) → upload queue (customer bundles).

The handler only wires: Powertools' batch processor calls the transformer once per SQS record and reports the
records that raised as partial batch failures. Bad input never raises (it goes to the bad-records queue inside
`SnapshotTransformer.handle`), so a failure reported here is a transient one that SQS should retry.
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

from chartmogul_sync.config import get_settings
from chartmogul_sync.failures import FailureReportingProcessor
from chartmogul_sync.queues import BadRecords, MessageSender, Stage
from chartmogul_sync.transform.config import load_mapping_config
from chartmogul_sync.transform.service import Outcome, SnapshotTransformer

logger = Logger()
metrics = Metrics(namespace="ChartMogulSync")
tracer = Tracer()
# Every failed record is logged at WARNING with its reason, which is kept for its dead letter (failures.py).
processor = FailureReportingProcessor(Stage.TRANSFORM, logger)
OUTCOME_METRICS = {
    Outcome.BUNDLED: "BundlesSent",
    Outcome.BAD_RECORD: "BadRecords",
    Outcome.EXCLUDED: "CustomersExcluded",
    Outcome.HEAD_DROPPED: "CustomerHeadsDropped",
}


@lru_cache(maxsize=1)
def transformer() -> SnapshotTransformer:
    """Built once per Lambda environment. An unusable mapping config fails here, loudly, before any record."""
    settings = get_settings()
    s3 = boto3.client("s3")
    sender = MessageSender(boto3.client("sqs"), s3, settings.staging_bucket)
    return SnapshotTransformer(
        s3=s3,
        sender=sender,
        upload_queue_url=settings.upload_queue_url,
        bad_records=BadRecords(sender, settings.bad_records_queue_url, Stage.TRANSFORM),
        config=load_mapping_config(settings.mapping_config_path),
    )


@tracer.capture_method(capture_response=False)
def record_handler(record: SQSRecord) -> None:
    result = transformer().handle(record.body)
    metrics.add_metric(name=OUTCOME_METRICS[result.outcome], unit=MetricUnit.Count, value=1)
    if result.outcome is Outcome.BUNDLED:
        metrics.add_metric(name="InvoicesMapped", unit=MetricUnit.Count, value=result.invoices)
        metrics.add_metric(name="StripeObjectsSkipped", unit=MetricUnit.Count, value=len(result.skipped))


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
