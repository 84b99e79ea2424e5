"""`cmsync check | status | audit --stack NAME` against a stack found by its name in moto's CloudFormation: the keys
from the stack's Secrets Manager secrets, the queues' depths, the schedule's state, the state table's cursor and
last runs, the dead-letter queues' records. Nothing comes from the environment but the two emulators' addresses
(standing in for the real Stripe and ChartMogul) and the region.

The stack holds the resources `--stack` reads under template.yaml's logical ids (SAM names a ScheduleV2 event's
schedule `<function><event>`, and its role `<function><event>Role`), with the resource types template.yaml gives
them; a test checks the two agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner, Result
from moto import mock_aws

from chartmogul_sync.cli import main
from chartmogul_sync.config import get_settings
from chartmogul_sync.queues import BadRecord, Stage
from chartmogul_sync.sources.stripe.incremental import CURSOR_PK, CURSOR_SK, EventCursor
from chartmogul_sync.sources.stripe.run import RUN_RECORD_PK, RunRecord
from localdev import chartmogul_emulator, stripe_emulator
from localdev.fx import DEFAULT_RATES
from localdev.scenarios import Account, generate_account
from tests.fixtures import moto_cloudformation
from tests.fixtures.stripe_objects import eventbridge_stripe_event as stripe_event

STACK = "cmsync-ops"
REGION = "us-east-1"
STRIPE_KEY = "sk_test_from_the_stack_secret"


def _queue(dead_letter_queue: str | None = None) -> dict[str, Any]:
    if dead_letter_queue is None:
        return {"Type": "AWS::SQS::Queue"}
    redrive = {"deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_queue, "Arn"]}, "maxReceiveCount": 5}
    return {"Type": "AWS::SQS::Queue", "Properties": {"RedrivePolicy": redrive}}


def _schedule(state: str, description: str) -> dict[str, Any]:
    target = {
        "Arn": f"arn:aws:lambda:{REGION}:123456789012:function:{STACK}-export",
        "RoleArn": "arn:aws:iam::1:role/r",
    }
    return {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "ScheduleExpression": "rate(1 hour)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": state,
            "Description": description,
            "Target": target,
        },
    }


TEMPLATE: dict[str, Any] = {
    "Resources": {
        "RawQueue": _queue("RawDeadLetterQueue"),
        "UploadQueue": _queue("UploadDeadLetterQueue"),
        "RawDeadLetterQueue": _queue(),
        "UploadDeadLetterQueue": _queue(),
        "BadRecordsQueue": _queue(),
        "ExportFailedQueue": _queue(),
        "ScheduleDeadLetterQueue": _queue(),
        "AuditFailedQueue": _queue(),
        "StateTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            },
        },
        "StagingBucket": {"Type": "AWS::S3::Bucket"},
        # As template.yaml declares them: named after the stack, without a value until the user puts one.
        "StripeApiKeySecret": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {"Name": f"{STACK}/stripe-api-key"},
        },
        "ChartMogulApiKeySecret": {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {"Name": f"{STACK}/chartmogul-api-key"},
        },
        # What SAM makes of the two ScheduleV2 events: the incremental schedule is off, the audit's on, and the
        # schedule's role and DLQ carry "Schedule" in their names too: only the incremental schedule is its state.
        "ExportFunctionIncrementalScheduleRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "scheduler.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        "AuditFunctionDailyAudit": _schedule("ENABLED", "Daily audit of ChartMogul against Stripe."),
        "ExportFunctionIncrementalSchedule": _schedule("DISABLED", "Incremental export"),
    }
}
# The near-real-time path's queues, which template.yaml creates only with StripePartnerEventSourceName.
REALTIME_QUEUES: dict[str, Any] = {
    "StripeEventsQueue": _queue("StripeEventsDeadLetterQueue"),
    "StripeEventsDeadLetterQueue": _queue(),
}
TEMPLATE_WITH_REALTIME: dict[str, Any] = {"Resources": {**TEMPLATE["Resources"], **REALTIME_QUEUES}}
# Resources SAM generates from template.yaml's functions (not in template.yaml itself).
SAM_GENERATED = {
    "ExportFunctionIncrementalScheduleRole",
    "AuditFunctionDailyAudit",
    "ExportFunctionIncrementalSchedule",
}


@dataclass
class Deployed:
    physical: dict[str, str]
    stripe: stripe_emulator.RunningStripeEmulator
    chartmogul: chartmogul_emulator.RunningEmulator
    account: Account

    def put_keys(self, stripe_key: str = STRIPE_KEY, chartmogul_key: str | None = None) -> None:
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.put_secret_value(SecretId=self.physical["StripeApiKeySecret"], SecretString=stripe_key)
        secrets.put_secret_value(
            SecretId=self.physical["ChartMogulApiKeySecret"], SecretString=chartmogul_key or self.chartmogul.api_key
        )

    def send(self, logical_id: str, body: str) -> None:
        boto3.client("sqs", region_name=REGION).send_message(QueueUrl=self.physical[logical_id], MessageBody=body)

    def put_state(self, pk: str, sk: str, **attributes: Any) -> None:
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.physical["StateTable"])
        table.put_item(Item={"pk": pk, "sk": sk, **attributes})


@pytest.fixture
def account() -> Account:
    return generate_account(customers=8, months=4, seed=21, now=int(time.time()))


@pytest.fixture
def deployed(account: Account, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    """A stack without the near-real-time path."""
    yield from _deploy(account, monkeypatch, TEMPLATE)


@pytest.fixture
def deployed_realtime(account: Account, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    """A stack with the Stripe events queue and its DLQ."""
    yield from _deploy(account, monkeypatch, TEMPLATE_WITH_REALTIME)


def _deploy(account: Account, monkeypatch: pytest.MonkeyPatch, template: dict[str, Any]) -> Iterator[Deployed]:
    moto_cloudformation.register()
    with (
        stripe_emulator.start(account, follow_wall_clock=True) as stripe_server,
        chartmogul_emulator.start(rate_limit=None) as chartmogul_server,
    ):
        # Only where the two services are and the region: keys, queues and table come from the stack.
        for name in (
            "STRIPE_API_KEY",
            "CHARTMOGUL_API_KEY",
            "STATE_TABLE",
            "RAW_QUEUE_URL",
            "UPLOAD_QUEUE_URL",
            "BAD_RECORDS_QUEUE_URL",
            "EXPORT_FAILED_QUEUE_URL",
            "SCHEDULE_DEAD_LETTER_QUEUE_URL",
            "STRIPE_EVENTS_QUEUE_URL",
            "AUDIT_FAILED_QUEUE_URL",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.setenv("STRIPE_API_BASE", stripe_server.base_url)
        monkeypatch.setenv("CHARTMOGUL_API_URL", chartmogul_server.api_url)
        get_settings.cache_clear()
        with mock_aws():
            cloudformation = boto3.client("cloudformation", region_name=REGION)
            cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
            summaries = cloudformation.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
            physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}
            assert set(physical) == set(template["Resources"]), "moto created every resource of the stack"
            yield Deployed(physical, stripe_server, chartmogul_server, account)
    get_settings.cache_clear()


def cmsync(*args: str) -> Result:
    get_settings.cache_clear()
    result = CliRunner().invoke(main, [*args, "--stack", STACK])
    assert "Traceback" not in result.output, result.output
    return result


def bad_record(customer: str) -> str:
    return BadRecord(
        stage=Stage.UPLOAD, reason="ChartMogul refused it: 422", customer_external_id=customer, original_body="{}"
    ).model_dump_json()


def test_the_stack_resources_are_template_yaml_s() -> None:
    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((Path(__file__).parents[2] / "template.yaml").read_text(), Loader=_Loader)
    declared = {name: resource["Type"] for name, resource in template["Resources"].items()}
    for logical_id, resource in TEMPLATE_WITH_REALTIME["Resources"].items():
        if logical_id not in SAM_GENERATED:
            assert declared.get(logical_id) == resource["Type"], logical_id
    events = template["Resources"]["ExportFunction"]["Properties"]["Events"]
    assert events["IncrementalSchedule"]["Type"] == "ScheduleV2"
    assert template["Resources"]["AuditFunction"]["Properties"]["Events"]["DailyAudit"]["Type"] == "ScheduleV2"


def test_check_reads_the_keys_from_the_stack_and_reports_its_schedule_and_queues(deployed: Deployed) -> None:
    unset = cmsync("check", "--json")
    assert unset.exit_code == 1
    checks = {c["what"]: c for c in json.loads(unset.stdout)["checks"]}
    assert checks["stack secrets"]["status"] == "fail"
    assert "StripeApiKeySecret" in checks["stack secrets"]["detail"]
    assert f"put-secret-value --secret-id {STACK}/stripe-api-key" in checks["stack secrets"]["detail"]
    assert checks["stack schedule"]["detail"] == "DISABLED"  # the stack's own checks still ran

    deployed.put_keys()
    good = cmsync("check", "--json")
    assert good.exit_code == 0, good.output
    checks = {c["what"]: c for c in json.loads(good.stdout)["checks"]}
    assert checks["Stripe key"]["detail"] == "secret key, test mode"  # the stack's Stripe secret
    assert checks["ChartMogul key"]["status"] == "ok" and checks["Stripe read invoices"]["status"] == "ok"
    assert checks["stack secrets"]["status"] == "ok"
    assert checks["stack schedule"]["detail"] == "DISABLED"  # the incremental schedule, not the audit's
    assert checks["stack queue bad-records"] == {
        "what": "stack queue bad-records",
        "status": "ok",
        "detail": "0 messages",
    }
    assert STRIPE_KEY not in good.output

    deployed.send("BadRecordsQueue", bad_record("cus_x"))
    deployed.send("UploadQueue", "{}")  # work in flight is not a problem
    waiting = cmsync("check", "--json")
    assert waiting.exit_code == 1
    checks = {c["what"]: c for c in json.loads(waiting.stdout)["checks"]}
    assert checks["stack queue bad-records"]["status"] == "fail"
    assert checks["stack queue upload"] == {"what": "stack queue upload", "status": "ok", "detail": "1 messages"}

    deployed.put_keys(chartmogul_key="a-key-chartmogul-refuses")
    wrong = cmsync("check", "--json")
    assert wrong.exit_code == 1
    checks = {c["what"]: c for c in json.loads(wrong.stdout)["checks"]}
    assert checks["ChartMogul key"]["status"] == "fail" and "401" in checks["ChartMogul key"]["detail"]
    assert "a-key-chartmogul-refuses" not in wrong.output


def test_status_shows_the_cursor_last_runs_queues_and_schedule_of_the_stack(deployed: Deployed) -> None:
    now = int(time.time())
    cursor = EventCursor(created=now - 120, event_ids=frozenset({"evt_1"}))
    deployed.put_state(CURSOR_PK, CURSOR_SK, cursor=cursor.model_dump_json(), position=cursor.position())
    run = RunRecord(
        mode="incremental",
        run_id="incremental-20261201T120000Z",
        started_at=now - 125,
        finished_at=now - 120,
        outcome="ok",
        customers_exported=3,
    )
    deployed.put_state(RUN_RECORD_PK, "incremental", run=run.model_dump_json())

    healthy = cmsync("status", "--json")
    assert healthy.exit_code == 0, healthy.output
    status = json.loads(healthy.stdout)
    assert status["schedule"] == "DISABLED"
    assert 110 <= status["cursor_age_seconds"] <= 3600
    assert status["last_runs"]["incremental"]["customers_exported"] == 3
    assert status["last_runs"]["incremental"]["outcome"] == "ok"
    assert status["queue_depths"] == dict.fromkeys(
        ("raw", "raw-dlq", "upload", "upload-dlq", "bad-records", "export-failed", "schedule-dlq", "audit-failed"), 0
    )

    deployed.send("RawDeadLetterQueue", "{}")
    table = cmsync("status")
    assert table.exit_code == 1
    assert "last incremental run" in table.output and "3 customers exported" in table.output
    assert "needs attention" in table.output


def test_audit_reads_the_stack_s_state_and_dead_letter_queues(deployed: Deployed, account: Account) -> None:
    deployed.put_keys()
    customers = sorted(c.id for c in account.store.customers if c.deleted_at is None)
    parked, changed, failed_export = customers[0], customers[1], customers[2]
    # The last sync's cursor is now; then a customer changes in Stripe; one customer's bundle waits in bad-records.
    cursor = EventCursor(created=int(deployed.stripe.store.now))
    deployed.put_state(CURSOR_PK, CURSOR_SK, cursor=cursor.model_dump_json(), position=cursor.position())
    time.sleep(1.1)  # the change's event after the cursor's second
    deployed.stripe.apply_step({"kind": "cancel", "customer": changed})
    deployed.send("BadRecordsQueue", bad_record(parked))
    # Lambda's on-failure record of a one-customer export that failed its retries (ExportFailedQueue).
    failure = {
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": {"mode": "customer", "customer_id": failed_export},
        "responsePayload": {"errorType": "APIConnectionError", "errorMessage": "Stripe unreachable"},
    }
    deployed.send("ExportFailedQueue", json.dumps(failure))

    audited = ("--customer", parked, "--customer", changed, "--customer", failed_export)
    result = cmsync("audit", "--json", "--rates", json.dumps(DEFAULT_RATES), *audited)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    causes = {d["customer"]: (d["cause"], d["detail"]) for d in report["differences"] if d["check"] == "integrity"}
    assert causes[parked][0] == "waiting in a dead-letter queue" and causes[parked][1].startswith("bad-records: ")
    assert causes[changed][0] == "not yet synced"
    assert causes[failed_export][0] == "waiting in a dead-letter queue"
    assert causes[failed_export][1].startswith("export-failed: ") and "Stripe unreachable" in causes[failed_export][1]
    # Every terminal queue a record can wait in was read; this stack has no near-real-time path, and says so.
    assert report["queues_read"] == ["bad-records", "raw-dlq", "upload-dlq", "export-failed", "schedule-dlq"]
    assert list(report["queues_not_read"]) == ["stripe-events-dlq"]
    assert "StripePartnerEventSourceName" in report["queues_not_read"]["stripe-events-dlq"]


def test_status_and_check_show_the_stripe_events_queue_its_oldest_message_and_its_dlq(
    deployed_realtime: Deployed,
) -> None:
    idle = cmsync("status", "--json")
    assert idle.exit_code == 0, idle.output
    status = json.loads(idle.stdout)
    assert status["queue_depths"]["stripe-events"] == 0 and status["queue_depths"]["stripe-events-dlq"] == 0
    assert status["oldest_message_age_seconds"]["stripe-events"] is None  # no CloudWatch figure yet

    deployed_realtime.send("StripeEventsQueue", stripe_event("cus_a"))
    # SQS publishes ApproximateAgeOfOldestMessage itself; moto's SQS does not, so the figure is put as SQS would.
    queue_name = deployed_realtime.physical["StripeEventsQueue"].rsplit("/", 1)[-1]
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
                "Value": 420,
                "Unit": "Seconds",
            }
        ],
    )
    in_flight = cmsync("status", "--json")
    assert in_flight.exit_code == 0, in_flight.output  # events being exported are not a problem
    status = json.loads(in_flight.stdout)
    assert status["queue_depths"]["stripe-events"] == 1
    assert status["oldest_message_age_seconds"]["stripe-events"] == 420
    assert "1, oldest 0:07:00 old" in cmsync("status").output

    deployed_realtime.send("StripeEventsDeadLetterQueue", stripe_event("cus_b"))
    waiting = cmsync("status", "--json")
    assert waiting.exit_code == 1
    assert json.loads(waiting.stdout)["queue_depths"]["stripe-events-dlq"] == 1
    checks = {c["what"]: c for c in json.loads(cmsync("check", "--json").stdout)["checks"]}
    assert checks["stack queue stripe-events-dlq"]["status"] == "fail"
    assert checks["stack queue stripe-events"] == {
        "what": "stack queue stripe-events",
        "status": "ok",
        "detail": "1 messages",
    }


def test_a_failed_scheduled_audit_makes_status_and_check_fail_like_a_failed_export(deployed: Deployed) -> None:
    deployed.put_keys()
    assert cmsync("status", "--json").exit_code == 0
    # Lambda's on-failure record of the audit (AuditFunction's destination, AuditFailedQueue).
    record = {
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 1},
        "requestPayload": {},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 900.00 seconds"},
    }
    deployed.send("AuditFailedQueue", json.dumps(record))

    failing = cmsync("status", "--json")
    assert failing.exit_code == 1
    assert json.loads(failing.stdout)["queue_depths"]["audit-failed"] == 1
    assert "queue audit-failed" in cmsync("status").output
    check = cmsync("check", "--json")
    assert check.exit_code == 1
    checks = {c["what"]: c for c in json.loads(check.stdout)["checks"]}
    assert checks["stack queue audit-failed"] == {
        "what": "stack queue audit-failed",
        "status": "fail",
        "detail": "1 messages",
    }


def test_status_and_check_show_the_audit_schedule_beside_the_incremental_one(deployed: Deployed) -> None:
    status = json.loads(cmsync("status", "--json").stdout)
    assert (status["schedule"], status["audit_schedule"]) == ("DISABLED", "ENABLED")
    assert "audit schedule" in cmsync("status").output
    checks = {c["what"]: c for c in json.loads(cmsync("check", "--json").stdout)["checks"]}
    assert checks["stack audit schedule"]["detail"] == "ENABLED"


def test_without_the_near_real_time_path_the_stripe_events_dlq_is_one_line(deployed: Deployed) -> None:
    result = cmsync("dlq", "list", "stripe-events-dlq")
    assert result.exit_code == 2  # a usage error: this stack has no such queue
    [error] = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert "no Stripe events queue" in error and "StripePartnerEventSourceName" in error


def test_audit_names_the_customer_whose_stripe_event_waits_in_the_stripe_events_dlq(
    deployed_realtime: Deployed, account: Account
) -> None:
    deployed_realtime.put_keys()
    customer = sorted(c.id for c in account.store.customers if c.deleted_at is None)[0]
    deployed_realtime.send("StripeEventsDeadLetterQueue", stripe_event(customer))

    result = cmsync("audit", "--json", "--rates", json.dumps(DEFAULT_RATES), "--customer", customer)

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    [difference] = [d for d in report["differences"] if d["check"] == "integrity" and d["customer"] == customer][:1]
    assert difference["cause"] == "waiting in a dead-letter queue"
    assert difference["detail"].startswith("stripe-events-dlq: ")
