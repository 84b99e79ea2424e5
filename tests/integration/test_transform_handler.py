"""The transform Lambda handler against moto SQS and S3: bundles out, claim checks resolved, bad records set aside
with their reason, the rest of the batch unaffected, transient failures retried by SQS."""

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from chartmogul_sync.config import get_settings
from chartmogul_sync.models import ClaimCheck, RawMessage, UploadMessage
from chartmogul_sync.queues import BadRecord
from localdev.aws.lambda_model import LocalLambdaContext, load_handler
from tests.fixtures.state_table import create_state_table
from tests.fixtures.stripe_objects import Line, SnapshotBuilder, at, moment

ROOT = Path(__file__).parents[2]
BATCH_TEMPLATE = json.loads((ROOT / "events" / "sqs-transform-batch.json").read_text())
BUCKET = "chartmogul-sync-staging-test"
STATE_TABLE = "chartmogul-sync-state-test"
JAN, FEB = at(2025, 1, 1), at(2025, 2, 1)


@dataclass
class Stack:
    sqs: Any
    s3: Any
    upload_queue: str
    bad_records_queue: str
    handler: Any

    def invoke(self, bodies: list[str]) -> dict[str, Any]:
        template = BATCH_TEMPLATE["Records"][0]
        records = []
        for index, body in enumerate(bodies):
            record = copy.deepcopy(template)
            record.update(messageId=f"msg-{index}", body=body, md5OfBody=hashlib.md5(body.encode()).hexdigest())
            records.append(record)
        context = LocalLambdaContext("transform", "arn:aws:lambda:us-east-1:123456789012:function:transform", 512, 60)
        return self.handler({"Records": records}, context)  # type: ignore[no-any-return]

    def drain(self, queue_url: str) -> list[str]:
        bodies: list[str] = []
        for _ in range(50):  # bounded: a test sends a few dozen messages at most
            messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        raise AssertionError("queue did not drain")

    def bundles(self) -> list[UploadMessage]:
        return [UploadMessage.model_validate_json(body) for body in self.drain(self.upload_queue)]

    def bad_records(self) -> list[BadRecord]:
        return [BadRecord.model_validate_json(body) for body in self.drain(self.bad_records_queue)]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        upload = sqs.create_queue(QueueName="upload")["QueueUrl"]
        bad = sqs.create_queue(QueueName="bad-records")["QueueUrl"]
        create_state_table(STATE_TABLE)  # where a failed record's reason is kept for its dead letter
        for name, value in {
            "AWS_DEFAULT_REGION": "us-east-1",
            "STATE_TABLE": STATE_TABLE,
            "STAGING_BUCKET": BUCKET,
            "UPLOAD_QUEUE_URL": upload,
            "BAD_RECORDS_QUEUE_URL": bad,
            "POWERTOOLS_SERVICE_NAME": "transform",
            "POWERTOOLS_METRICS_NAMESPACE": "ChartMogulSync",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        handler = load_handler(ROOT / "functions" / "transform", "app.lambda_handler", "test_transform")
        yield Stack(sqs, s3, upload, bad, handler)
    get_settings.cache_clear()


def customer(customer_id: str) -> SnapshotBuilder:
    builder = SnapshotBuilder(customer_id=customer_id)
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)])
    builder.add_invoice(
        f"in_{customer_id[4:]}",
        [
            Line(
                f"il_{customer_id[4:]}",
                10_000,
                JAN,
                FEB,
                price_id="price_pro_m",
                subscription_item="si_1",
                subscription="sub_1",
            )
        ],
        subscription="sub_1",
        pay_with=f"pi_{customer_id[4:]}",
    )
    builder.add_invoice(
        f"in_d{customer_id[4:]}", [Line("il_draft", 500, FEB, FEB, invoice_item="ii_1")], status="draft"
    )
    return builder


def message_body(raw_snapshot: dict[str, Any], customer_id: str) -> str:
    return json.dumps(
        {
            "schema_version": 1,
            "kind": "customer_snapshot",
            "customer_external_id": customer_id,
            "snapshot_time": "2025-02-02T00:00:00Z",
            "correlation_id": f"run-{customer_id}",
            "payload": raw_snapshot,
        }
    )


def claim_checked_body(
    stack: Stack, raw_snapshot: dict[str, Any], customer_id: str, *, store: bool = True, bucket: str = BUCKET
) -> str:
    payload = json.dumps(raw_snapshot).encode()
    digest = hashlib.sha256(payload).hexdigest()
    key = f"claim-checks/customer_snapshot/{customer_id}/{digest}.json"
    if store:
        stack.s3.put_object(Bucket=BUCKET, Key=key, Body=payload)
    message = RawMessage(
        customer_external_id=customer_id,
        snapshot_time=moment(FEB),
        correlation_id="run-1",
        claim_check=ClaimCheck(bucket=bucket, key=key, sha256=digest, size_bytes=len(payload)),
    )
    return message.model_dump_json(exclude_none=True)


def test_bundles_out_claim_check_resolved_bad_record_aside_rest_of_batch_unaffected(stack: Stack) -> None:
    broken = customer("cus_broken").raw()
    del broken["invoices"][0]["lines"]["data"][0]["period"]

    response = stack.invoke(
        [
            message_body(customer("cus_inline").raw(), "cus_inline"),
            claim_checked_body(stack, customer("cus_inS3").raw(), "cus_inS3"),
            message_body(broken, "cus_broken"),
        ]
    )

    assert response == {"batchItemFailures": []}  # the bad record is handled, not retried
    bundles = {message.customer_external_id: message for message in stack.bundles()}
    assert sorted(bundles) == ["cus_inS3", "cus_inline"]
    inline = bundles["cus_inline"]
    assert inline.payload is not None and inline.snapshot_time == moment(at(2025, 2, 2))
    assert [line.amount_in_cents for line in inline.payload.invoices[0].line_items] == [10_000]
    assert [(s.source_object_id, s.reason) for s in inline.payload.skipped] == [
        ("in_dinline", "draft invoice: only finalized invoices are imported")
    ]
    assert bundles["cus_inS3"].payload is not None and bundles["cus_inS3"].correlation_id == "run-1"
    [bad] = stack.bad_records()
    assert (bad.stage, bad.object_id, bad.field, bad.customer_external_id) == (
        "transform",
        "in_broken",
        "lines.data.0.period",
        "cus_broken",
    )
    assert bad.reason == "Field required" and json.loads(bad.original_body)["customer_external_id"] == "cus_broken"


def test_the_upload_mode_a_backfill_asked_for_travels_on_to_the_upload_queue(stack: Stack) -> None:
    bulk = json.loads(message_body(customer("cus_bulk").raw(), "cus_bulk")) | {"upload_mode": "bulk"}
    assert stack.invoke([json.dumps(bulk), message_body(customer("cus_api").raw(), "cus_api")]) == {
        "batchItemFailures": []
    }
    modes = {message.customer_external_id: message.upload_mode for message in stack.bundles()}
    assert modes == {"cus_bulk": "bulk", "cus_api": None}


def head_of(raw_snapshot: dict[str, Any]) -> dict[str, Any]:
    """The customer head a backfill sends first (docs/architecture.md "Customer heads")."""
    return {"api_version": raw_snapshot["api_version"], "customer": raw_snapshot["customer"], "customer_only": True}


def test_a_customer_head_goes_on_as_the_customer_alone_and_one_that_cannot_be_mapped_is_left_to_its_snapshot(
    stack: Stack,
) -> None:
    # Two metadata keys that become the same attribute key: the customer cannot be mapped, head or whole.
    clashing = customer("cus_clash").raw()
    clashing["customer"]["metadata"] = {"crm-id": "1", "crm_id": "2"}

    response = stack.invoke(
        [
            message_body(head_of(customer("cus_head").raw()), "cus_head"),
            message_body(head_of(clashing), "cus_clash"),
        ]
    )

    assert response == {"batchItemFailures": []}
    [bundle] = stack.bundles()
    assert bundle.payload is not None and bundle.payload.customer_only and bundle.payload.invoices == []
    assert bundle.payload.customer.external_id == "cus_head"
    assert stack.bad_records() == []  # the head's failure is only logged: its whole snapshot will say why
    stack.invoke([message_body(clashing, "cus_clash")])
    [bad] = stack.bad_records()
    assert (bad.customer_external_id, bad.field) == ("cus_clash", "metadata.crm_id")


def test_a_message_that_is_not_a_snapshot_envelope_is_a_bad_record(stack: Stack) -> None:
    response = stack.invoke(
        ['{"placeholder": "customer snapshot envelope", "customer_external_id": "cus_x"}', "{not json"]
    )

    assert response == {"batchItemFailures": []}
    first, second = stack.bad_records()
    assert first.customer_external_id == "cus_x" and first.field in {"snapshot_time", "correlation_id"}
    assert second.reason.startswith("Invalid JSON")
    assert stack.bundles() == []


def test_an_unreadable_claim_check_fails_only_its_record_so_sqs_retries_it(stack: Stack) -> None:
    # A bucket S3 cannot read (here: one that does not exist) is passing trouble: access, throttling, an outage.
    unreadable = claim_checked_body(stack, customer("cus_later").raw(), "cus_later", bucket="no-such-bucket")

    response = stack.invoke([message_body(customer("cus_ok").raw(), "cus_ok"), unreadable])

    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert [message.customer_external_id for message in stack.bundles()] == ["cus_ok"]
    assert stack.bad_records() == []  # transient: not a bad record, SQS redelivers and then the DLQ keeps it


def test_a_claim_check_whose_object_is_gone_is_a_bad_record_naming_the_export_that_recovers_it(stack: Stack) -> None:
    missing = claim_checked_body(stack, customer("cus_gone").raw(), "cus_gone", store=False)

    assert stack.invoke([missing]) == {"batchItemFailures": []}  # no retry brings the object back

    [bad] = stack.bad_records()
    assert (bad.stage, bad.field, bad.customer_external_id) == ("transform", "claim_check", "cus_gone")
    assert "is gone" in bad.reason and '{"mode": "customer", "customer_id": "cus_gone"}' in bad.reason


def test_a_tampered_claim_check_is_a_bad_record(stack: Stack) -> None:
    body = json.loads(claim_checked_body(stack, customer("cus_t").raw(), "cus_t"))
    body["claim_check"]["sha256"] = "0" * 64

    assert stack.invoke([json.dumps(body)]) == {"batchItemFailures": []}
    [bad] = stack.bad_records()
    assert bad.field == "claim_check" and "does not match its sha256" in bad.reason


# ---------------------------------------------------------------- property: malformed never raises past the handler

VALUES = st.one_of(
    st.none(), st.integers(-(2**40), 2**40), st.text(max_size=4), st.booleans(), st.just([]), st.just({})
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:2]):
            found += paths(child, (*prefix, index))
    return found


def rich_snapshot() -> dict[str, Any]:
    builder = customer("cus_fuzz")
    builder.add_refund("re_1", "ch_fuzz", "pi_fuzz", 1_000, FEB)
    builder.add_credit_note("cn_1", "in_fuzz", 1_000, FEB, kind="post_payment", refund_id="re_1")
    return builder.raw()


SNAPSHOT = rich_snapshot()
SNAPSHOT_PATHS = paths(SNAPSHOT)


@st.composite
def mutated_snapshots(draw: st.DrawFn) -> dict[str, Any]:
    snapshot = copy.deepcopy(SNAPSHOT)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(SNAPSHOT_PATHS))
        parent = snapshot
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return snapshot


def test_malformed_snapshots_never_raise_past_the_handler(stack: Stack) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(snapshot=mutated_snapshots())
    def each(snapshot: dict[str, Any]) -> None:
        response = stack.invoke([message_body(snapshot, "cus_fuzz")])

        assert response == {"batchItemFailures": []}
        outcomes = len(stack.bundles()) + len(stack.bad_records())
        assert outcomes == 1  # a bundle or a bad record with a reason: never lost, never retried

    each()


def test_a_deeply_nested_body_is_a_bad_record_not_a_crash(stack: Stack) -> None:
    deep = '{"customer_external_id": "cus_deep", "payload": ' + '{"a":' * 100_000 + "1" + "}" * 100_001

    assert stack.invoke([deep, message_body(customer("cus_ok").raw(), "cus_ok")]) == {"batchItemFailures": []}

    [bad] = stack.bad_records()
    assert bad.stage == "transform" and "recursion limit exceeded" in bad.reason
    assert [message.customer_external_id for message in stack.bundles()] == ["cus_ok"]
