"""Export function: Stripe → raw queue, one customer snapshot per message.

Invoked by the schedule (incremental), by hand (backfill, one customer) and by itself (continuation of a run
that reached its time limit). The near-real-time path (Stripe events) has a function of its own,
`functions/stripe_events`, which runs beside this one. The handler only wires: parse the event, build the
exporter, run the mode, hand over if asked to, publish the run's metrics.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from chartmogul_sync.config import Settings, get_settings
from chartmogul_sync.queues import BadRecords, MessageSender, Stage
from chartmogul_sync.sources.stripe.backfill import (
    BackfillNotFound,
    StagedDataMissing,
    resume_backfill,
    start_backfill,
)
from chartmogul_sync.sources.stripe.incremental import export_customer, resume_incremental, run_incremental
from chartmogul_sync.sources.stripe.invocation import (
    BackfillRequest,
    ContinuationRequest,
    CustomerRequest,
    ExportRequest,
    IncrementalRequest,
    InvalidExportRequest,
    parse_export_request,
)
from chartmogul_sync.sources.stripe.run import Exporter, ExportOutcome, recorded_run
from chartmogul_sync.sources.stripe.wiring import build_exporter, export_wiring, run_metrics

logger = Logger()
metrics = Metrics(namespace="ChartMogulSync")
tracer = Tracer()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    try:
        request = parse_export_request(event)
    except InvalidExportRequest as error:
        # No retry can make a bad event good: the invocation is asynchronous, and raising would have Lambda run
        # it twice more (MaximumRetryAttempts), reporting it each time. Kept once, and answered with the reason.
        _report_bad_event(settings, event, error)
        return {"error": str(error), "field": error.field}
    run_id = request.run_id_for(context.aws_request_id)
    logger.set_correlation_id(run_id)
    logger.info("export run", extra={"mode": request.mode, "run_id": run_id})

    exporter = build_exporter(settings, run_id, context, logger, on_retry=_log_retry)
    # The run's end, however it ends, is kept as its mode's last run (`cmsync status`).
    mode = request.resume if isinstance(request, ContinuationRequest) else request.mode
    try:
        with recorded_run(exporter, mode) as run:
            try:
                outcome = _run(exporter, request)
            except (BackfillNotFound, StagedDataMissing) as failure:
                # No retry can help (a run that never started; staged data that is gone): kept once with its reason
                # on the bad-records queue, logged at ERROR, answered as a failed run, not retried by Lambda twice.
                run.failed(str(failure))
                field = "run_id" if isinstance(failure, BackfillNotFound) else None
                _report_bad_event(settings, event, InvalidExportRequest(str(failure), (field,) if field else ()))
                return {"error": str(failure), "field": field, "run_id": run_id, "finished": False}
            run.finished(outcome)
    except Exception:
        # Lambda retries the invocation (a backfill resumes from its checkpoint, an incremental run re-reads
        # from its unmoved cursor); the log says why, under the run's correlation id.
        logger.exception("export run failed", extra={"mode": request.mode})
        raise
    finally:
        _publish_metrics(exporter)  # a failed run's cost counts too
    if outcome.mode == "incremental" and outcome.finished:
        # The heartbeat: an alarm fires when no incremental run finished for HeartbeatHours (template.yaml).
        metrics.add_metric(name="IncrementalRunsSucceeded", unit=MetricUnit.Count, value=1)
    if outcome.continuation is not None:
        export_wiring.continuation(outcome.continuation, context)
    cost = {"stripe_requests": exporter.api.stats.requests, "stripe_retries": exporter.api.stats.retries}
    return {**outcome.model_dump(mode="json"), "invocation": cost}


@tracer.capture_method(capture_response=False)
def _run(exporter: Exporter, request: ExportRequest) -> ExportOutcome:
    if isinstance(request, IncrementalRequest):
        return run_incremental(exporter)
    if isinstance(request, BackfillRequest):
        return start_backfill(exporter, request.range, request.effective_upload_mode)
    if isinstance(request, CustomerRequest):
        return export_customer(exporter, request.customer_id)
    if request.resume == "backfill":
        return resume_backfill(exporter)
    return resume_incremental(exporter)


def _log_retry(what: str, error: BaseException, wait_s: float) -> None:
    logger.warning(
        "Stripe request failed, retrying",
        extra={"request": what, "error": type(error).__name__, "detail": str(error)[:200], "wait_s": round(wait_s, 2)},
    )


def _publish_metrics(exporter: Exporter) -> None:
    for name, value in run_metrics(exporter):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _report_bad_event(settings: Settings, event: Any, error: InvalidExportRequest) -> None:
    """A bad invocation is kept on the bad-records queue with its reason and field, and logged."""
    logger.error("rejected export event", extra={"reason": str(error), "field": error.field})
    metrics.add_metric(name="RejectedEvents", unit=MetricUnit.Count, value=1)
    if not settings.bad_records_queue_url:
        return
    sender = MessageSender(boto3.client("sqs"), boto3.client("s3"), settings.staging_bucket)
    bad_records = BadRecords(sender, settings.bad_records_queue_url, Stage.EXPORT)
    bad_records.send(json.dumps(event, default=str), str(error), field=error.field)
