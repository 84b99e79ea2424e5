"""Stripe events function: near-real-time export, Stripe events (EventBridge → the Stripe events queue) → one
snapshot per customer the batch's events name, on the raw queue, with a partial batch response.

A function of its own beside the export function, so that a batch is never throttled behind a running export (the
export's reserved concurrency is 1, and throttled SQS batches burn receive counts towards the queue's DLQ:
docs/architecture.md "The near-real-time function beside a running export"). The handler only wires: build the
exporter with this function's share of Stripe's rate limit, run the batch (`sources/stripe/realtime.py`), publish
its metrics, answer which records failed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from chartmogul_sync.config import get_settings
from chartmogul_sync.sources.stripe.realtime import run_event_batch
from chartmogul_sync.sources.stripe.wiring import build_exporter, run_metrics

logger = Logger()
metrics = Metrics(namespace="ChartMogulSync")
tracer = Tracer()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run_id = f"realtime-{context.aws_request_id}"
    logger.set_correlation_id(run_id)
    records = event.get("Records", [])
    exporter = build_exporter(get_settings(), run_id, context, logger, realtime=True, on_retry=_log_retry)
    try:
        outcome = run_event_batch(exporter, records)
    except Exception:
        # Raising fails the whole batch: every record comes back after the visibility timeout.
        logger.exception("Stripe events batch failed", extra={"records": len(records)})
        raise
    finally:
        _publish(run_metrics(exporter))  # a failed batch's cost counts too
    logger.info("Stripe events exported", extra=outcome.model_dump(mode="json", exclude={"failed"}))
    _publish(outcome.metrics())
    return outcome.batch_response()


def _publish(counts: list[tuple[str, int]]) -> None:
    for name, value in counts:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _log_retry(what: str, error: BaseException, wait_s: float) -> None:
    logger.warning(
        "Stripe request failed, retrying",
        extra={"request": what, "error": type(error).__name__, "detail": str(error)[:200], "wait_s": round(wait_s, 2)},
    )
