"""`cmsync dlq` against a stack in moto found by its name (CloudFormation): every queue understood with its reason,
filters, a dry run that changes nothing, and a replay of only what the filters select."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws

from chartmogul_sync.cli import main
from chartmogul_sync.config import get_settings
from chartmogul_sync.failures import FailureLedger, RecordFailure
from chartmogul_sync.queues import BadRecord, Stage
from chartmogul_sync.state import StateTable
from tests.fixtures.stripe_objects import eventbridge_stripe_event

STACK = "cmsync-dlq-test"
# The queues and the table of template.yaml under their logical ids: what `--stack` looks up.
TEMPLATE = {
    "Resources": {
        "BadRecordsQueue": {"Type": "AWS::SQS::Queue"},
        "RawDeadLetterQueue": {"Type": "AWS::SQS::Queue"},
        "UploadDeadLetterQueue": {"Type": "AWS::SQS::Queue"},
        "ExportFailedQueue": {"Type": "AWS::SQS::Queue"},
        "ScheduleDeadLetterQueue": {"Type": "AWS::SQS::Queue"},
        "AuditFailedQueue": {"Type": "AWS::SQS::Queue"},
        # The scheduled audit, which `dlq replay audit-failed` invokes again (moto's Lambda without Docker: it
        # accepts invocations and runs no code).
        "AuditFunctionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        "AuditFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Runtime": "python3.13",
                "Handler": "index.lambda_handler",
                "Role": {"Fn::GetAtt": ["AuditFunctionRole", "Arn"]},
                "Code": {"ZipFile": "def lambda_handler(event, context):\n    return {}\n"},
            },
        },
        "RawQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["RawDeadLetterQueue", "Arn"]},
                    "maxReceiveCount": 5,
                }
            },
        },
        "UploadQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["UploadDeadLetterQueue", "Arn"]},
                    "maxReceiveCount": 5,
                }
            },
        },
        # The near-real-time path's queues (template.yaml has them with StripePartnerEventSourceName).
        "StripeEventsDeadLetterQueue": {"Type": "AWS::SQS::Queue"},
        "StripeEventsQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["StripeEventsDeadLetterQueue", "Arn"]},
                    "maxReceiveCount": 5,
                }
            },
        },
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
    }
}
# Nothing from the environment: the stack name is all the command gets.
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "BAD_RECORDS_QUEUE_URL": "",
    "RAW_QUEUE_URL": "",
    "UPLOAD_QUEUE_URL": "",
    "EXPORT_FAILED_QUEUE_URL": "",
    "SCHEDULE_DEAD_LETTER_QUEUE_URL": "",
    "STRIPE_EVENTS_QUEUE_URL": "",
    "AUDIT_FAILED_QUEUE_URL": "",
    "AUDIT_FUNCTION_NAME": "not-this-function",
    "STATE_TABLE": "not-this-table",
}


@dataclass
class Deployed:
    sqs: Any
    urls: dict[str, str]
    table: str

    def send(self, logical_id: str, body: str, **attributes: str) -> str:
        extra = {"MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}}
        answer = self.sqs.send_message(
            QueueUrl=self.urls[logical_id], MessageBody=body, **(extra if attributes else {})
        )
        return str(answer["MessageId"])

    def bodies(self, logical_id: str) -> list[str]:
        answer = self.sqs.receive_message(QueueUrl=self.urls[logical_id], MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [m["Body"] for m in answer.get("Messages", [])]


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with mock_aws(config={"lambda": {"use_docker": False}}):
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))
        resources = cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
        yield Deployed(boto3.client("sqs", region_name="us-east-1"), physical, physical["StateTable"])
    get_settings.cache_clear()


def cmsync(*args: str) -> Result:
    get_settings.cache_clear()
    result = CliRunner().invoke(main, [*args, "--stack", STACK])
    assert "Traceback" not in result.output
    return result


def rows(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def bad_record(stage: Stage, customer: str, reason: str, original: str) -> str:
    return BadRecord(
        stage=stage, reason=reason, customer_external_id=customer, original_body=original
    ).model_dump_json()


def test_bad_records_are_found_by_stack_name_and_filtered_by_stage_customer_and_reason(deployed: Deployed) -> None:
    deployed.send("BadRecordsQueue", bad_record(Stage.UPLOAD, "cus_a", "ChartMogul refused in_1: 422", '{"a":1}'))
    deployed.send("BadRecordsQueue", bad_record(Stage.TRANSFORM, "cus_b", "in_2: total: lines add up", '{"b":1}'))

    assert sorted(r["customer_external_id"] for r in rows(cmsync("dlq", "list", "bad-records", "--json"))) == [
        "cus_a",
        "cus_b",
    ]
    assert [
        r["customer_external_id"] for r in rows(cmsync("dlq", "list", "bad-records", "--json", "--stage", "upload"))
    ] == ["cus_a"]
    assert [r["stage"] for r in rows(cmsync("dlq", "list", "bad-records", "--json", "--customer", "cus_b"))] == [
        "transform"
    ]
    assert [
        r["customer_external_id"] for r in rows(cmsync("dlq", "list", "bad-records", "--json", "--reason", "ADD UP"))
    ] == ["cus_b"]


def test_a_dry_run_changes_nothing_and_a_filtered_replay_moves_only_what_it_selects(deployed: Deployed) -> None:
    deployed.send("BadRecordsQueue", bad_record(Stage.UPLOAD, "cus_a", "refused", '{"the":"bundle of a"}'))
    deployed.send("BadRecordsQueue", bad_record(Stage.UPLOAD, "cus_b", "refused", '{"the":"bundle of b"}'))

    dry = cmsync("dlq", "replay", "bad-records", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "2 would replay, 0 left" in dry.output
    assert deployed.bodies("UploadQueue") == [] and len(deployed.bodies("BadRecordsQueue")) == 2

    replayed = cmsync("dlq", "replay", "bad-records", "--customer", "cus_b")
    assert replayed.exit_code == 0, replayed.output
    assert "1 replayed, 0 left" in replayed.output
    assert deployed.bodies("UploadQueue") == ['{"the":"bundle of b"}']
    assert [BadRecord.model_validate_json(b).customer_external_id for b in deployed.bodies("BadRecordsQueue")] == [
        "cus_a"
    ]


def test_a_dead_letter_shows_the_reason_its_function_recorded_for_its_message_id(deployed: Deployed) -> None:
    body = json.dumps({"kind": "customer_snapshot", "customer_external_id": "cus_d", "correlation_id": "backfill-1"})
    message_id = deployed.send("RawDeadLetterQueue", body)
    ledger = FailureLedger(StateTable(boto3.resource("dynamodb", region_name="us-east-1"), deployed.table))
    ledger.record(
        RecordFailure(
            message_id=message_id,
            stage=Stage.TRANSFORM,
            reason="ClaimCheckError: claim check s3://b/k could not be read: SlowDown",
            error_type="ClaimCheckError",
            customer_external_id="cus_d",
            receive_count=5,
        )
    )

    [row] = rows(cmsync("dlq", "list", "raw-dlq", "--json"))

    assert row["stage"] == "transform" and row["customer_external_id"] == "cus_d"
    assert "last failure in transform" in row["reason"] and "SlowDown" in row["reason"]
    assert row["last_failure"]["receive_count"] == 5


def test_an_export_failure_and_a_schedule_dead_letter_are_listed_with_their_reasons(deployed: Deployed) -> None:
    record = {
        "version": "1.0",
        "timestamp": "2026-11-30T10:00:00.000Z",
        "requestContext": {
            "requestId": "req-1",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:chartmogul-sync-export:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"mode": "backfill", "from": "2025-01-01"},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "Stripe answered 500", "errorType": "APIError"},
    }
    deployed.send("ExportFailedQueue", json.dumps(record))
    deployed.send(
        "ScheduleDeadLetterQueue",
        '{"mode":"incremental","scheduled_time":"2026-11-30T10:00:00Z"}',
        ERROR_CODE="AWS.Scheduler.ResourceNotFound",
        ERROR_MESSAGE="Function not found",
    )

    [failed] = rows(cmsync("dlq", "list", "export-failed", "--json"))
    [scheduled] = rows(cmsync("dlq", "list", "schedule-dlq", "--json"))

    assert failed["stage"] == "export" and failed["export_event"] == {"mode": "backfill", "from": "2025-01-01"}
    assert (
        failed["reason"]
        == "export invocation failed (RetriesExhausted after 3 attempt(s)): APIError: Stripe answered 500"
    )
    assert scheduled["reason"] == (
        "the schedule could not invoke the export (AWS.Scheduler.ResourceNotFound): Function not found"
    )
    # The stack here has no export function: the replay says how to run the event instead, and leaves it.
    left = cmsync("dlq", "replay", "export-failed")
    assert left.exit_code == 1 and '{"mode":"backfill","from":"2025-01-01"}' in left.output


def test_an_unknown_stack_is_one_line(deployed: Deployed) -> None:
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["dlq", "list", "bad-records", "--stack", "no-such-stack"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and result.output.startswith("Error: AWS: ")


def test_the_stripe_events_dlq_shows_why_each_event_waits_and_replays_them_to_the_stripe_events_queue(
    deployed: Deployed,
) -> None:
    failed_body = eventbridge_stripe_event("cus_e", "evt_failed")
    failed_id = deployed.send("StripeEventsDeadLetterQueue", failed_body)
    # What the Stripe events function keeps for a record it failed on (sources/stripe/realtime.py).
    FailureLedger(StateTable(boto3.resource("dynamodb", region_name="us-east-1"), deployed.table)).record(
        RecordFailure(
            message_id=failed_id,
            stage=Stage.EXPORT,
            reason="fetching the snapshot of customer cus_e failed: Stripe APIError (HTTP 500): try again",
            error_type="APIError",
            customer_external_id="cus_e",
            receive_count=5,
        )
    )
    # An event EventBridge could not deliver to the queue: the body is the event, the error in its attributes.
    undelivered_body = eventbridge_stripe_event("cus_u", "evt_undelivered")
    deployed.send(
        "StripeEventsDeadLetterQueue",
        undelivered_body,
        ERROR_CODE="NO_PERMISSIONS",
        ERROR_MESSAGE="User is not authorized to perform: kms:GenerateDataKey",
    )

    listed = {r["customer_external_id"]: r for r in rows(cmsync("dlq", "list", "stripe-events-dlq", "--json"))}

    assert {r["stage"] for r in listed.values()} == {"export"}
    assert {r["kind"] for r in listed.values()} == {"stripe_event"}
    assert "last failure in export" in listed["cus_e"]["reason"] and "HTTP 500" in listed["cus_e"]["reason"]
    assert listed["cus_u"]["reason"] == (
        "EventBridge could not deliver Stripe event evt_undelivered (customer.subscription.updated) to the Stripe "
        "events queue (NO_PERMISSIONS): User is not authorized to perform: kms:GenerateDataKey"
    )

    replayed = cmsync("dlq", "replay", "stripe-events-dlq")
    assert replayed.exit_code == 0, replayed.output
    assert "2 replayed, 0 left" in replayed.output
    assert sorted(deployed.bodies("StripeEventsQueue")) == sorted([failed_body, undelivered_body])
    assert deployed.bodies("StripeEventsDeadLetterQueue") == []


def test_a_failed_scheduled_audit_is_listed_with_lambda_s_reason_and_replayed_by_invoking_the_audit_again(
    deployed: Deployed,
) -> None:
    # Lambda's on-failure record of the scheduled audit (AuditFunction's destination: AuditFailedQueue), as
    # https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html shows one.
    schedule_input = {"scheduled": "daily audit"}
    record = {
        "version": "1.0",
        "timestamp": "2026-12-01T06:15:02.000Z",
        "requestContext": {
            "requestId": "req-audit-1",
            "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{deployed.urls['AuditFunction']}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 1,
        },
        "requestPayload": schedule_input,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "ChartMogul answered 401", "errorType": "ChartMogulAuthError"},
    }
    deployed.send("AuditFailedQueue", json.dumps(record))
    # A timeout leaves no error payload: the function error is what Lambda says.
    timed_out = {**record, "responsePayload": None}
    deployed.send("AuditFailedQueue", json.dumps(timed_out))

    listed = rows(cmsync("dlq", "list", "audit-failed", "--json"))

    assert sorted(r["reason"] for r in listed) == [
        "audit invocation failed (RetriesExhausted after 1 attempt(s)): ChartMogulAuthError: ChartMogul answered 401",
        "audit invocation failed (RetriesExhausted after 1 attempt(s)): Unhandled function error, no error message "
        "(a timeout or out-of-memory leaves none)",
    ]
    assert {(r["stage"], r["kind"], json.dumps(r["audit_event"])) for r in listed} == {
        ("audit", "audit_failure", json.dumps(schedule_input))
    }

    invoked: list[dict[str, Any]] = []

    def record_invoke(params: dict[str, Any], **_: Any) -> None:
        invoked.append(dict(params))

    # Every Lambda Invoke the command makes, as botocore sends it to moto.
    boto3.DEFAULT_SESSION = None
    boto3._get_default_session().events.register("provide-client-params.lambda.Invoke", record_invoke)
    try:
        replayed = cmsync("dlq", "replay", "audit-failed")
    finally:
        boto3.DEFAULT_SESSION = None

    assert replayed.exit_code == 0, replayed.output
    assert f"→ the audit function {deployed.urls['AuditFunction']}" in replayed.output
    assert "2 replayed, 0 left in audit-failed" in replayed.output
    # Found through CloudFormation (not the environment's AUDIT_FUNCTION_NAME), asynchronously, with the event
    # the audit failed on.
    assert [(i["FunctionName"], i["InvocationType"], json.loads(i["Payload"])) for i in invoked] == [
        (deployed.urls["AuditFunction"], "Event", schedule_input)
    ] * 2
    assert deployed.bodies("AuditFailedQueue") == []


def without_stack(*args: str) -> Result:
    """The command with nothing but the environment (ENV: no queue URLs): a queue given by URL or SQS name."""
    get_settings.cache_clear()
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def failed_audit_record(function_name: str) -> str:
    """Lambda's on-failure record of the scheduled audit (as in the test above), of a timeout."""
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": "2026-12-01T06:15:02.000Z",
            "requestContext": {
                "requestId": "req-audit-2",
                "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": {"scheduled": "daily audit"},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": None,
        }
    )


AUDIT_TIMEOUT = (
    "audit invocation failed (RetriesExhausted after 3 attempt(s)): Unhandled function error, no error message "
    "(a timeout or out-of-memory leaves none)"
)


def test_an_audit_failed_queue_given_by_url_alone_is_listed_and_replayed_as_failed_audits(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack's queue by its URL, nothing else: no --stack, no queue URL in the environment. Its name is the
    # one CloudFormation generated (`<stack>-AuditFailedQueue-<random>`; this stack's queues have no tags, as one
    # deployed before template.yaml tagged them).
    url = deployed.urls["AuditFailedQueue"]
    assert "-AuditFailedQueue-" in url and not deployed.sqs.list_queue_tags(QueueUrl=url).get("Tags")
    deployed.send("AuditFailedQueue", failed_audit_record(deployed.urls["AuditFunction"]))

    [row] = rows(without_stack("dlq", "list", url, "--json"))
    assert (row["kind"], row["stage"], row["reason"]) == ("audit_failure", "audit", AUDIT_TIMEOUT)
    assert row["audit_event"] == {"scheduled": "daily audit"} and row["export_event"] is None

    # Without an audit function to invoke it says so, as an audit failure, and leaves the record.
    monkeypatch.setenv("AUDIT_FUNCTION_NAME", "")
    left = without_stack("dlq", "replay", url)
    assert left.exit_code == 1
    assert "an audit failure: no audit function configured (give --stack or AUDIT_FUNCTION_NAME)" in left.output
    assert "export" not in left.output
    assert f"0 replayed, 1 left in audit-failed ({url})" in left.output
    assert len(deployed.bodies("AuditFailedQueue")) == 1

    # With one, the audit is invoked again (moto's Lambda accepts it) and the record is gone.
    monkeypatch.setenv("AUDIT_FUNCTION_NAME", deployed.urls["AuditFunction"])
    replayed = without_stack("dlq", "replay", url)
    assert replayed.exit_code == 0, replayed.output
    assert f"→ the audit function {deployed.urls['AuditFunction']}" in replayed.output
    assert deployed.bodies("AuditFailedQueue") == []


def test_a_queue_is_known_by_its_tag_or_its_work_queue_whatever_its_name_and_an_unknown_queue_is_refused_untouched(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name that says nothing (a stack whose long name CloudFormation cut short, say): the tag template.yaml
    # puts on every terminal queue says it is audit-failed.
    tagged = deployed.sqs.create_queue(QueueName="ops-failures", tags={"chartmogul-sync:queue": "audit-failed"})
    deployed.sqs.send_message(QueueUrl=tagged["QueueUrl"], MessageBody=failed_audit_record("prod-audit"))
    [row] = rows(without_stack("dlq", "list", "ops-failures", "--json"))
    assert (row["kind"], row["reason"]) == ("audit_failure", AUDIT_TIMEOUT)

    # A DLQ whose name and tags say nothing, found as the dead-letter queue of the raw queue the environment names.
    dead = deployed.sqs.create_queue(QueueName="ops-dead")["QueueUrl"]
    dead_arn = deployed.sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 5})
    work = deployed.sqs.create_queue(QueueName="ops-work", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    monkeypatch.setenv("RAW_QUEUE_URL", work)
    dry = without_stack("dlq", "replay", dead, "--dry-run")
    assert dry.exit_code == 0 and f"0 would replay, 0 left in raw-dlq ({dead})" in dry.output, dry.output
    monkeypatch.setenv("RAW_QUEUE_URL", "")

    # A queue nothing names as one of the stack's: one line naming it, before any message is received.
    other = deployed.sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    deployed.sqs.send_message(QueueUrl=other, MessageBody=failed_audit_record("prod-audit"))
    for command in ("list", "replay"):
        refused = without_stack("dlq", command, other)
        assert refused.exit_code == 1
        [error] = [line for line in refused.output.splitlines() if line.startswith("Error: ")]
        assert f"queue {other!r} is none of this stack's terminal queues" in error
        assert "audit-failed" in error  # what can be given instead
    waiting = deployed.sqs.receive_message(QueueUrl=other, AttributeNames=["ApproximateReceiveCount"])
    assert waiting["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "1"  # this receive: the first
