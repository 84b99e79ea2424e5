"""The local runtime against moto: in-process, and through moto's server on loopback, in this process or its own.

The must-show scenario: a handler fails one record of a batch; that record alone is retried, it lands in the
DLQ after maxReceiveCount receives, the other records are deleted once and nothing else is lost.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel

from localdev.aws.lambda_model import Handler, sqs_event_record
from localdev.aws.poller import PollerOptions
from localdev.aws.runtime import BACKENDS, Backend, DrainIncompleteError, LocalStack, load_event, local_stack
from localdev.aws.template import DEFAULT_TEMPLATE, Template
from tests.integration.local_handlers import (
    AlwaysRaise,
    CountOverlap,
    ExportSnapshots,
    FailOneRecord,
    ForwardToUploadQueue,
    RaiseOnEveryBatch,
    Recorder,
    ReportUnknownRecord,
)

# Failed records become visible again at once instead of after the queue's 360 s visibility timeout, and a
# batch does not wait for its batching window: the speed-ups the runtime documents for tests.
FAST = PollerOptions(wait_for_batching_window=False, failed_record_visibility_timeout=0)
TERMINAL_QUEUES = (
    "RawDeadLetterQueue",
    "UploadDeadLetterQueue",
    "BadRecordsQueue",
    "ScheduleDeadLetterQueue",
    "ExportFailedQueue",
)


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(DEFAULT_TEMPLATE)


@pytest.fixture
def fast_stack(template: Template) -> Iterator[LocalStack]:
    with local_stack(template, options=FAST) as stack:
        yield stack


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["Body"] for m in messages)


# ------------------------------------------------------------------------------------ the must-show scenario
@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_record_alone_is_retried_then_dead_lettered(backend: Backend, template: Template) -> None:
    good = ["snapshot-1", "snapshot-2", "snapshot-3", "snapshot-4"]
    handler = FailOneRecord(failing_body="poison")
    max_receive_count = template.queues["RawQueue"].redrive.max_receive_count  # type: ignore[union-attr]

    with local_stack(template, backend=backend, options=FAST, handlers={"TransformFunction": handler}) as stack:
        sent = {stack.send("RawQueue", body): body for body in [*good, "poison"]}
        report = stack.drain()

        # The first batch held all five; every later batch held the failing record alone.
        batches = report.batches_of("TransformFunction")
        assert handler.batches[0] == [*good, "poison"]
        assert handler.batches[1:] == [["poison"]] * (max_receive_count - 1)
        poison_id = next(message_id for message_id, body in sent.items() if body == "poison")
        assert [b.receive_counts for b in batches[1:]] == [{poison_id: n} for n in range(2, max_receive_count + 1)]
        # Each good record was processed once and deleted once; the failing one was never deleted.
        assert handler.deliveries == Counter({**dict.fromkeys(good, 1), "poison": max_receive_count})
        deleted = Counter(sent[i] for b in batches for i in b.deleted_ids)
        assert deleted == Counter(good)
        # After maxReceiveCount receives SQS moved it to the DLQ; nothing else is anywhere.
        dead = stack.receive_all("RawDeadLetterQueue")
        assert bodies(dead) == ["poison"]
        assert stack.queue_depth("RawQueue") == 0
        assert sorted([*deleted.elements(), *bodies(dead)]) == sorted(sent.values())
        assert all(stack.queue_depth(q) == 0 for q in ("UploadQueue", *TERMINAL_QUEUES) if q != "RawDeadLetterQueue")


@pytest.mark.parametrize("handler_type", [RaiseOnEveryBatch, ReportUnknownRecord])
def test_exception_or_invalid_report_fails_the_whole_batch(
    handler_type: type[RaiseOnEveryBatch | ReportUnknownRecord], template: Template
) -> None:
    handler = handler_type()
    with local_stack(template, options=FAST, handlers={"TransformFunction": handler}) as stack:
        for body in ("a", "b", "c"):
            stack.send("RawQueue", body)
        report = stack.drain()

        assert handler.deliveries == Counter({"a": 5, "b": 5, "c": 5})
        assert all(b.error and not b.deleted_ids for b in report.batches)
        assert bodies(stack.receive_all("RawDeadLetterQueue")) == ["a", "b", "c"]


def test_without_the_speed_up_a_failed_record_waits_for_the_visibility_timeout(template: Template) -> None:
    handler = FailOneRecord(failing_body="poison")
    options = PollerOptions(wait_for_batching_window=False)  # faithful: failed records stay in flight 360 s
    with local_stack(template, options=options, handlers={"TransformFunction": handler}) as stack:
        stack.send("RawQueue", "poison")
        with pytest.raises(DrainIncompleteError) as stopped:
            stack.drain(timeout_seconds=0.3)

        assert len(stopped.value.report.batches) == 1
        assert handler.deliveries == Counter({"poison": 1})
        assert stack.queue_depth("RawQueue") == 1  # in flight, not lost


def test_drain_stops_at_its_batch_bound(template: Template) -> None:
    with local_stack(template, options=FAST, handlers={"TransformFunction": RaiseOnEveryBatch()}) as stack:
        stack.send("RawQueue", "a")
        with pytest.raises(DrainIncompleteError):
            stack.drain(max_batches=2)


def test_a_disabled_trigger_leaves_its_queue_to_a_later_drain(template: Template) -> None:
    """Lambda's UpdateEventSourceMapping(Enabled=False): the messages wait in the queue, a drain neither runs the
    function nor waits for them; enabled again, the next drain delivers every one, once."""
    recorder = Recorder()
    with local_stack(template, options=FAST, handlers={"TransformFunction": recorder}) as stack:
        stack.set_event_sources_enabled("TransformFunction", False)
        for n in range(12):
            stack.send("RawQueue", f"snapshot-{n}")
        stack.drain(timeout_seconds=10)
        assert recorder.calls == []
        assert stack.queue_depth("RawQueue") == 12
        stack.set_event_sources_enabled("TransformFunction", True)
        stack.drain()
        assert stack.queue_depth("RawQueue") == 0
        with pytest.raises(KeyError, match="NoSuchFunction"):
            stack.set_event_sources_enabled("NoSuchFunction", False)
    delivered = [r["body"] for event, _, _ in recorder.calls for r in event["Records"]]
    assert sorted(delivered) == sorted(f"snapshot-{n}" for n in range(12))


def test_batches_hold_up_to_batch_size(template: Template) -> None:
    recorder = Recorder()
    batch_size = template.functions["TransformFunction"].sqs_events[0].batch_size  # 10: one receive of 10
    with local_stack(template, options=FAST, handlers={"TransformFunction": recorder}) as stack:
        for n in range(batch_size + 5):
            stack.send("RawQueue", f"snapshot-{n}")
        stack.drain()

    assert [len(event["Records"]) for event, _, _ in recorder.calls] == [batch_size, 5]


def test_a_batch_stops_at_lambdas_six_mb_payload_quota(template: Template) -> None:
    """The upload trigger's batch size (1,000) is not reached when the records fill 6 MB first; the message
    received past the quota starts the next batch, and every message is delivered once."""
    recorder = Recorder()
    options = PollerOptions(wait_for_batching_window=False, failed_record_visibility_timeout=0, concurrent=False)
    body = "x" * 240_000  # SQS takes up to 256 KiB a message
    with local_stack(template, options=options, handlers={"UploadFunction": recorder}) as stack:
        for n in range(30):  # 7.2 MB in all
            stack.send("UploadQueue", f"{n:02d}{body}")
        stack.drain()

    sizes = [len(json.dumps(event)) for event, _, _ in recorder.calls]
    assert len(sizes) == 2 and all(size <= 6 * 1024 * 1024 for size in sizes)
    delivered = [r["body"][:2] for event, _, _ in recorder.calls for r in event["Records"]]
    assert sorted(delivered) == [f"{n:02d}" for n in range(30)]


def test_a_batch_waits_out_its_batching_window_when_the_queue_has_less(template: Template) -> None:
    raw = copy.deepcopy(template.raw)
    raw["Resources"]["TransformFunction"]["Properties"]["Events"]["RawSnapshots"]["Properties"].update(
        MaximumBatchingWindowInSeconds=1
    )
    recorder = Recorder()
    options = PollerOptions(wait_for_batching_window=True, failed_record_visibility_timeout=0)
    with local_stack(
        Template(raw, template.base_dir), options=options, handlers={"TransformFunction": recorder}
    ) as stack:
        for body in ("a", "b", "c"):
            stack.send("RawQueue", body)
        stack.drain()

    # Three messages, batch size 10: one invocation after the window, not three.
    assert [sorted(r["body"] for r in event["Records"]) for event, _, _ in recorder.calls] == [["a", "b", "c"]]


# ------------------------------------------------------------------------------------ wiring and invocation
@pytest.mark.parametrize("backend", BACKENDS)
def test_export_to_upload_through_the_template_queues(backend: Backend, template: Template) -> None:
    upload = FailOneRecord(failing_body="never")
    handlers: dict[str, Handler] = {
        "ExportFunction": ExportSnapshots(["cus_1", "cus_2", "cus_3"]),
        "TransformFunction": ForwardToUploadQueue(),
        "UploadFunction": upload,
    }
    with local_stack(template, backend=backend, options=FAST, handlers=handlers) as stack:
        assert stack.invoke("ExportFunction", load_event("backfill.json")) == {"exported": 3}
        stack.drain()

        assert upload.deliveries == Counter(
            {"bundle:backfill:cus_1": 1, "bundle:backfill:cus_2": 1, "bundle:backfill:cus_3": 1}
        )
        assert all(stack.queue_depth(q) == 0 for q in stack.template.queues)  # what the parameters deployed


@pytest.mark.parametrize("event_file", ["schedule.json", "backfill.json", "customer.json"])
def test_direct_invocation_with_an_event_file(event_file: str, fast_stack: LocalStack) -> None:
    recorder = Recorder(response={"ok": True})
    fast_stack.use_handler("ExportFunction", recorder)

    assert fast_stack.invoke("chartmogul-sync-local-export", load_event(event_file)) == {"ok": True}

    ((event, context, environment),) = recorder.calls
    assert event == json.loads((DEFAULT_TEMPLATE.parent / "events" / event_file).read_text())
    assert context.function_name == "chartmogul-sync-local-export"
    assert 0 < context.get_remaining_time_in_millis() <= 900_000  # ExportFunction's Timeout
    assert environment["POWERTOOLS_SERVICE_NAME"] == "export"
    assert environment["RAW_QUEUE_URL"] == fast_stack.queue_url("RawQueue")
    assert environment["STATE_TABLE"] == fast_stack.resource_name("StateTable")
    assert environment["UPLOAD_MODE"] == "api"


@pytest.mark.parametrize(
    ("event_file", "function", "queue"),
    [
        ("sqs-transform-batch.json", "TransformFunction", "RawQueue"),
        ("sqs-upload-batch.json", "UploadFunction", "UploadQueue"),
    ],
)
def test_sqs_event_files_have_the_shape_the_poller_builds(
    event_file: str, function: str, queue: str, fast_stack: LocalStack
) -> None:
    event = load_event(event_file)
    SqsModel.model_validate(event)  # Powertools' model of Lambda's SQS event
    fast_stack.send(queue, "probe", MessageAttributes={})
    (probe,) = fast_stack.receive_all(queue)
    built = sqs_event_record(probe, fast_stack.queue_arn(queue), fast_stack.region)
    for record in event["Records"]:
        assert set(record) == set(built)
        assert set(record["attributes"]) <= set(built["attributes"])
        assert record["eventSourceARN"] == fast_stack.queue_arn(queue)  # the queue the template binds

    handler = FailOneRecord(failing_body="none of them")
    fast_stack.use_handler(function, handler)
    assert fast_stack.invoke(function, event) == {"batchItemFailures": []}
    assert sum(handler.deliveries.values()) == len(event["Records"])


def test_async_invocation_retries_then_goes_to_the_on_failure_destination(fast_stack: LocalStack) -> None:
    export = AlwaysRaise()
    fast_stack.use_handler("ExportFunction", export)
    event = load_event("backfill.json")

    fast_stack.invoke_async("arn:aws:lambda:us-east-1:123456789012:function:chartmogul-sync-local-export", event)
    report = fast_stack.drain()

    retries = fast_stack.template.functions["ExportFunction"].properties["EventInvokeConfig"]["MaximumRetryAttempts"]
    assert export.calls == 1 + retries
    assert [(o.attempts, o.error is not None) for o in report.async_invocations] == [(1 + retries, True)]
    (failure,) = fast_stack.receive_all("ExportFailedQueue")
    record = json.loads(failure["Body"])
    assert record["requestPayload"] == event
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["responsePayload"]["errorType"] == "RuntimeError"


def test_handler_is_imported_from_code_uri(template: Template) -> None:
    raw = copy.deepcopy(template.raw)
    echo_dir = Path(__file__).parent / "local_functions" / "echo"
    raw["Resources"]["ExportFunction"]["Properties"]["CodeUri"] = str(echo_dir)
    with local_stack(Template(raw, template.base_dir), options=FAST) as stack:
        result = stack.invoke("ExportFunction", load_event("customer.json"))

        assert result == {
            "event": load_event("customer.json"),
            "function_name": "chartmogul-sync-local-export",
            "service": "export",
            "raw_queue_url": stack.queue_url("RawQueue"),
        }


# ------------------------------------------------------------------------------------ what gets created
def test_resources_are_created_as_declared(template: Template) -> None:
    raw = copy.deepcopy(template.raw)
    raw["Resources"]["OrderedQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"FifoQueue": True, "ContentBasedDeduplication": True, "VisibilityTimeout": 90},
    }
    # With a Stripe partner event source, so that every queue the template declares is deployed.
    source = "aws.partner/stripe.com/ed_test_resources"
    parameters = {"StripePartnerEventSourceName": source}
    with local_stack(Template(raw, template.base_dir), options=FAST, parameters=parameters) as stack:
        sqs = stack.clients.sqs
        assert set(stack.template.queues) == set(template.queues) | {"OrderedQueue"}
        (rule,) = stack.clients.events.list_rules(EventBusName=source)["Rules"]
        (target,) = stack.clients.events.list_targets_by_rule(Rule=rule["Name"], EventBusName=source)["Targets"]
        assert target["Arn"] == stack.queue_arn("StripeEventsQueue")
        for queue in template.queues.values():
            attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url(queue.logical_id), AttributeNames=["All"])
            a = attributes["Attributes"]
            assert int(a["VisibilityTimeout"]) == queue.visibility_timeout
            assert int(a["MessageRetentionPeriod"]) == queue.retention_seconds
            assert a["SqsManagedSseEnabled"] == "true"
            if queue.redrive is None:
                assert "RedrivePolicy" not in a
            else:
                assert json.loads(a["RedrivePolicy"]) == {
                    "deadLetterTargetArn": stack.queue_arn(queue.redrive.dead_letter_queue),
                    "maxReceiveCount": queue.redrive.max_receive_count,
                }
        fifo = sqs.get_queue_attributes(QueueUrl=stack.queue_url("OrderedQueue"), AttributeNames=["All"])
        assert stack.queue_url("OrderedQueue").endswith("chartmogul-sync-local-OrderedQueue.fifo")
        assert fifo["Attributes"]["FifoQueue"] == "true"
        assert fifo["Attributes"]["ContentBasedDeduplication"] == "true"

        table = stack.resource_name("StateTable")
        description = stack.clients.dynamodb.describe_table(TableName=table)["Table"]
        assert [(k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]] == [
            ("pk", "HASH"),
            ("sk", "RANGE"),
        ]
        assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert description["SSEDescription"]["Status"] == "ENABLED"
        ttl = stack.clients.dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        backups = stack.clients.dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

        bucket = stack.resource_name("StagingBucket")
        s3 = stack.clients.s3
        encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert encryption[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert (rule["ID"], rule["Status"], rule["Expiration"]["Days"]) == ("ExpireStagedObjects", "Enabled", 30)

        stack.put_secret_value("ChartMogulApiKeySecret", "cm-test-key")
        secret = stack.clients.secretsmanager.get_secret_value(SecretId="chartmogul-sync-local/chartmogul-api-key")
        assert secret["SecretString"] == "cm-test-key"
        assert stack.clients.secretsmanager.describe_secret(SecretId="chartmogul-sync-local/stripe-api-key")["Name"]


def test_settings_follow_each_new_stack(template: Template) -> None:
    """The functions' settings object reads the environment this runtime exports, fresh for every stack."""
    from chartmogul_sync.config import get_settings

    def read_settings(event: dict[str, Any], context: Any) -> tuple[str, str, int, str | None]:
        settings = get_settings()
        return settings.raw_queue_url, settings.state_table, settings.upload_max_concurrency, settings.stripe_api_base

    cases: list[tuple[Backend, str]] = [
        ("in-process", "http://127.0.0.1:1"),
        ("server", "http://127.0.0.1:2"),
        ("process", "http://127.0.0.1:3"),
    ]
    for backend, emulator in cases:
        with local_stack(
            template,
            backend=backend,
            parameters={"UploadMaximumConcurrency": "7"},
            environment={"STRIPE_API_BASE": emulator},
            handlers={"ExportFunction": read_settings},
        ) as stack:
            assert stack.invoke("ExportFunction", {}) == (
                stack.queue_url("RawQueue"),
                stack.resource_name("StateTable"),
                7,
                emulator,
            )


# ------------------------------------------------------------------------------------ concurrency
@pytest.mark.parametrize(
    ("function", "queue", "concurrent", "expected_peak"),
    [
        # UploadFunction: ScalingConfig.MaximumConcurrency = the UploadMaximumConcurrency parameter (3 here).
        ("UploadFunction", "UploadQueue", True, 3),
        # TransformFunction sets no limit: the runtime's default_concurrency (3).
        ("TransformFunction", "RawQueue", True, 3),
        ("UploadFunction", "UploadQueue", False, 1),
    ],
)
def test_sqs_functions_run_as_many_invocations_at_once_as_lambda_would(
    function: str, queue: str, concurrent: bool, expected_peak: int, template: Template
) -> None:
    # Each batch takes long enough for the others to be gathered meanwhile (a batch of 1,000 is 100 receives).
    handler = CountOverlap(seconds=1.5)
    options = PollerOptions(wait_for_batching_window=False, concurrent=concurrent, default_concurrency=3)
    parameters = {"UploadMaximumConcurrency": "3"}
    with local_stack(template, options=options, parameters=parameters, handlers={function: handler}) as stack:
        # Enough messages that no one batch can take them all: more than BatchSize per instance that should run.
        batch_size = next(p.source.batch_size for p in stack.pollers if p.source.queue == queue)
        sent = [f"m{i}" for i in range(batch_size * expected_peak + 10)]
        for start in range(0, len(sent), 10):
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(sent[start : start + 10])]
            stack.clients.sqs.send_message_batch(QueueUrl=stack.queue_url(queue), Entries=entries)
        report = stack.drain(timeout_seconds=60)

        assert handler.peak == expected_peak
        assert handler.deliveries == Counter(sent)  # each message delivered once, none lost
        assert sum(len(b.deleted_ids) for b in report.batches) == len(sent)
        assert stack.queue_depth(queue) == 0


# ------------------------------------------------------------------------------------ throttles
STRIPE_EVENTS = {"StripePartnerEventSourceName": "aws.partner/stripe.com/ed_test_throttles"}


class HeldExport:
    """An asynchronous export that stays in flight (as a backfill of hours does) until `done()` holds or 20 s pass;
    an SQS batch it is given is recorded and succeeds. Thread-safe."""

    def __init__(self, done: Callable[[], bool]) -> None:
        self.done = done
        self.batches: list[list[str]] = []
        self.released_by_condition: list[bool] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if "Records" in event:
            self.batches.append([record["body"] for record in event["Records"]])
            return {"batchItemFailures": []}
        deadline = time.monotonic() + 20
        while not self.done() and time.monotonic() < deadline:  # bounded
            time.sleep(0.05)
        self.released_by_condition.append(self.done())
        return {"finished": True}


def test_a_trigger_on_a_function_at_its_reserved_concurrency_is_throttled_until_its_events_are_dead_letters(
    template: Template,
) -> None:
    """The layout this stack had before the Stripe events function: the Stripe events trigger (MaximumConcurrency 2)
    on the export function (ReservedConcurrentExecutions 1). While an export runs, every batch is throttled and
    goes back to the queue with a receive counted, until healthy events are in the DLQ
    (https://repost.aws/knowledge-center/lambda-sqs-scaling)."""
    raw = copy.deepcopy(template.raw)
    raw["Resources"]["StripeEventsTrigger"]["Properties"]["FunctionName"] = {"Ref": "ExportFunction"}
    before_the_fix = Template(raw, template.base_dir)
    events = [f"evt-{i}" for i in range(3)]
    with local_stack(before_the_fix, options=FAST, parameters=STRIPE_EVENTS) as stack:
        export = HeldExport(lambda: stack.queue_depth("StripeEventsDeadLetterQueue") == len(events))
        stack.use_handler("ExportFunction", export)
        for body in events:
            stack.send("StripeEventsQueue", body)
        stack.invoke_async("ExportFunction", load_event("backfill.json"))
        report = stack.drain(timeout_seconds=60)

        assert export.released_by_condition == [True]  # the export ran until every event was a dead letter
        assert export.batches == []  # no batch ever reached the handler
        throttled = [b for b in report.batches if b.throttled]
        assert throttled and all(b.function == "ExportFunction" and not b.deleted_ids for b in throttled)
        max_receive_count = before_the_fix.queues["StripeEventsQueue"].redrive.max_receive_count  # type: ignore[union-attr]
        assert max(n for b in throttled for n in b.receive_counts.values()) == max_receive_count
        assert bodies(stack.receive_all("StripeEventsDeadLetterQueue")) == events


def test_the_stripe_events_function_handles_its_batches_while_an_export_runs(template: Template) -> None:
    with local_stack(template, options=FAST, parameters=STRIPE_EVENTS) as stack:
        realtime = Recorder()
        export = HeldExport(lambda: len(realtime.calls) > 0)
        stack.use_handler("ExportFunction", export)
        stack.use_handler("StripeEventsFunction", realtime)
        events = [f"evt-{i}" for i in range(3)]
        for body in events:
            stack.send("StripeEventsQueue", body)
        stack.invoke_async("ExportFunction", load_event("backfill.json"))
        report = stack.drain(timeout_seconds=60)

        assert export.released_by_condition == [True]  # the batch was handled while the export was in flight
        assert sorted(record["body"] for event, _, _ in realtime.calls for record in event["Records"]) == events
        assert [b for b in report.batches if b.throttled] == []
        assert stack.queue_depth("StripeEventsDeadLetterQueue") == 0
