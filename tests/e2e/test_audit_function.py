"""The scheduled Audit function (functions/audit/app.py) in the local runtime: it audits the deployed accounts
(here the emulators), stores the full report in the staging bucket and publishes the drift as CloudWatch metrics
(embedded metric format in its logs, as Lambda ships them)."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import chartmogul
import pytest

from chartmogul_sync.config import get_settings
from localdev.fx import DEFAULT_RATES
from localdev.pipeline import LocalPipeline, PipelineOptions
from localdev.scenarios import generate_account

pytestmark = pytest.mark.slow


def published_metrics(output: str) -> dict[str, float]:
    """The metric values of the embedded-metric-format documents the function printed."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document: dict[str, Any] = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "ChartMogulSync"
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                found[metric["Name"]] = float(value[0] if isinstance(value, list) else value)
    return found


def test_the_scheduled_audit_stores_its_report_and_publishes_drift(capsys: pytest.CaptureFixture[str]) -> None:
    # The account lives in real time: the function audits as of now, as it does when deployed.
    account = generate_account(customers=12, months=12, seed=5, now=int(time.time()))
    options = PipelineOptions(
        stripe_rate_limit=None,
        chartmogul_rate_limit=None,
        # The stack parameter AuditExchangeRates: the emulated ChartMogul account's rates, so every customer counts.
        extra_environment={"AUDIT_EXCHANGE_RATES": json.dumps(DEFAULT_RATES)},
    )
    with LocalPipeline(account, options) as pipeline:
        pipeline.backfill()
        capsys.readouterr()
        clean = pipeline.stack.invoke("AuditFunction", {})
        metrics = published_metrics(capsys.readouterr().out)
        assert clean["matches"] is True, clean
        assert metrics["AuditCustomersDiffering"] == 0 and metrics["AuditMrrDifference"] == 0
        assert metrics["AuditMatches"] == 1

        s3 = pipeline.stack.clients.s3
        bucket = pipeline.stack.resource_name("StagingBucket")
        stored = json.loads(s3.get_object(Bucket=bucket, Key=clean["report"])["Body"].read())
        assert clean["report"].startswith("audit/") and stored["summary"]["matches"] is True
        assert stored["customers_audited"] == len(account.scenarios)
        last = stored["months"][-1]
        assert last["chartmogul_mrr"] == last["stripe_mrr"] > 0

        # Drift: an invoice removed by hand in ChartMogul.
        config = pipeline.chartmogul.client_config()
        data_source = pipeline.chartmogul_data_source_uuid()
        customers = chartmogul.Customer.all(config, data_source_uuid=data_source, per_page=200).get().entries
        victim = next(c for c in customers if chartmogul.Invoice.all(config, uuid=c.uuid).get().invoices and c.mrr > 0)
        invoice = chartmogul.Invoice.all(config, uuid=victim.uuid).get().invoices[-1]
        chartmogul.Invoice.destroy(config, uuid=invoice.uuid).get()

        drifted = pipeline.stack.invoke("AuditFunction", {})
        metrics = published_metrics(capsys.readouterr().out)
        assert drifted["matches"] is False
        assert metrics["AuditCustomersDiffering"] == 1
        assert metrics["AuditMatches"] == 0
        stored = json.loads(s3.get_object(Bucket=bucket, Key=drifted["report"])["Body"].read())
        assert {d["customer"] for d in stored["differences"]} == {victim.external_id}
        assert {d["cause"] for d in stored["differences"]} == {"manual edit in ChartMogul"}

        # Its Stripe requests go through its own part of the Stripe budget (STRIPE_AUDIT_SHARE, beside a running
        # export): without one it refuses to run rather than take the export's.
        pipeline.stack.function("AuditFunction").environment["STRIPE_AUDIT_SHARE"] = "0"
        get_settings.cache_clear()  # as a new deployment's cold start reads its environment afresh
        with pytest.raises(ValueError, match="STRIPE_AUDIT_SHARE"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Powertools: a failed invocation publishes no metrics
            pipeline.stack.invoke("AuditFunction", {})


def test_the_scheduled_audit_reads_every_queue_a_record_waits_in_as_the_command_does() -> None:
    """The deployed audit's environment and permissions (template.yaml, with the near-real-time path) let it read
    export-failed, schedule-dlq and the Stripe events DLQ too: a customer whose export failed, or whose Stripe
    event waits, is "waiting in a dead-letter queue" with the reason, not "not uploaded" (a lost record)."""
    from chartmogul_sync.sinks.chartmogul.dlq import RECORD_QUEUES
    from tests.fixtures.stripe_objects import eventbridge_stripe_event

    account = generate_account(customers=4, months=3, seed=11, now=int(time.time()))
    options = PipelineOptions(
        stripe_rate_limit=None,
        chartmogul_rate_limit=None,
        stripe_event_destination=True,
        extra_environment={"AUDIT_EXCHANGE_RATES": json.dumps(DEFAULT_RATES)},
    )
    with LocalPipeline(account, options) as pipeline:
        customers = sorted(c.id for c in account.store.customers if c.deleted_at is None)
        failed_export, waiting_event, lost = customers[:3]
        # Lambda's on-failure record of a one-customer export (ExportFailedQueue), a Stripe event the Stripe events
        # function failed on (its DLQ), an incremental run the schedule could not start (no customer of its own).
        record = {
            "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": {"mode": "customer", "customer_id": failed_export},
            "responsePayload": {"errorType": "APIConnectionError", "errorMessage": "Stripe unreachable"},
        }
        pipeline.stack.send("ExportFailedQueue", json.dumps(record))
        pipeline.stack.send("StripeEventsDeadLetterQueue", eventbridge_stripe_event(waiting_event))
        pipeline.stack.send(
            "ScheduleDeadLetterQueue",
            '{"mode":"incremental"}',
            MessageAttributes={"ERROR_CODE": {"DataType": "String", "StringValue": "AWS.Scheduler.Throttled"}},
        )

        summary = pipeline.stack.invoke("AuditFunction", {})

        assert summary["queues_not_read"] == []
        bucket = pipeline.stack.resource_name("StagingBucket")
        stored = json.loads(pipeline.stack.clients.s3.get_object(Bucket=bucket, Key=summary["report"])["Body"].read())
        assert stored["queues_read"] == list(RECORD_QUEUES)
        causes = {d["customer"]: (d["cause"], d["detail"]) for d in stored["differences"] if d["check"] == "integrity"}
        assert causes[failed_export][0] == "waiting in a dead-letter queue"
        assert (
            causes[failed_export][1].startswith("export-failed: ") and "Stripe unreachable" in causes[failed_export][1]
        )
        assert causes[waiting_event][0] == "waiting in a dead-letter queue"
        assert causes[waiting_event][1].startswith("stripe-events-dlq: ")
        assert causes[lost][0] == "not uploaded"  # nothing was synced, and no queue holds it
