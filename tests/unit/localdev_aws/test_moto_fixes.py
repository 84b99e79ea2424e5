"""The moto SQS patch (localdev/aws/moto_fixes.py) changes moto's cost, never what SQS answers."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import sqs_backends

from localdev.aws import moto_fixes

REGION = "us-east-1"


@pytest.fixture
def sqs() -> Iterator[Any]:
    moto_fixes.install()
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def _queue(name: str) -> Any:
    return sqs_backends["123456789012"][REGION].queues[name]


def test_every_kind_of_queue_has_the_attributes_moto_itself_computes(sqs: Any) -> None:
    client = sqs
    dlq = client.create_queue(QueueName="dead")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client.create_queue(
        QueueName="with-redrive",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
            "KmsMasterKeyId": "alias/aws/sqs",
            "VisibilityTimeout": "5400",
        },
    )
    client.create_queue(QueueName="ordered.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    client.create_queue(QueueName="sse", Attributes={"SqsManagedSseEnabled": "true"})
    url = client.get_queue_url(QueueName="with-redrive")["QueueUrl"]
    client.send_message(QueueUrl=url, MessageBody="in flight")
    client.receive_message(QueueUrl=url)
    client.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=60)
    client.send_message(QueueUrl=url, MessageBody="visible")
    for name in ("dead", "with-redrive", "ordered.fifo", "sse"):
        queue = _queue(name)
        assert dict(queue.attributes) == moto_fixes.original_attributes(queue), name
    counts = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("1", "1")
    assert counts["ApproximateNumberOfMessagesDelayed"] == "1"


def test_fifo_content_based_deduplication_still_drops_a_repeated_body(sqs: Any) -> None:
    client = sqs
    url = client.create_queue(
        QueueName="dedup.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    for _ in range(2):
        client.send_message(QueueUrl=url, MessageBody="same body", MessageGroupId="g")
    assert (
        client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "1"
    )


def test_receive_still_skips_in_flight_and_delayed_messages_and_honours_retention(sqs: Any) -> None:
    client = sqs
    url = client.create_queue(QueueName="plain", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    client.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=30)
    client.send_message(QueueUrl=url, MessageBody="now")
    first = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    assert [m["Body"] for m in first] == ["now"]
    assert "Messages" not in client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    # A message older than the queue's retention period is never delivered (moto's own check, now cheap).
    client.send_message(QueueUrl=url, MessageBody="expired")
    expired = next(m for m in _queue("plain")._messages if m.body == "expired")
    expired.sent_timestamp = int((time.time() - 120) * 1000)
    assert "Messages" not in client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


def test_delete_takes_any_receipt_handle_the_message_had_and_refuses_one_it_never_had(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="deletes")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="kept")
    sqs.send_message(QueueUrl=url, MessageBody="deleted")
    first = {
        m["Body"]: m["ReceiptHandle"]
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    }
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)  # new receipt handles
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["deleted"])  # an older handle still deletes it
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["deleted"])  # and a second delete is harmless
    assert [m.body for m in _queue("deletes")._messages] == ["kept"]
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="never-issued")


def test_concurrent_deletes_leave_no_message_behind(sqs: Any) -> None:
    """moto's own delete rebuilt the queue without a lock: two threads deleting at once could write back each
    other's deleted message, which then stayed in flight for the whole visibility timeout (a stalled drain)."""
    url = sqs.create_queue(QueueName="busy", Attributes={"VisibilityTimeout": "5400"})["QueueUrl"]
    for start in range(0, 2000, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)]
        )
    handles: list[str] = []
    while received := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        handles += [m["ReceiptHandle"] for m in received]
    assert len(handles) == 2000

    def delete(chunk: list[str]) -> None:
        for start in range(0, len(chunk), 10):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk[start : start + 10])]
            assert not sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed")

    threads = [threading.Thread(target=delete, args=(handles[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _queue("busy")._messages == []


def test_dynamodb_conditional_writes_from_many_threads_let_exactly_one_win_and_queries_never_break(sqs: Any) -> None:
    """What the upload's leases rely on (DynamoDB's conditional writes are atomic), with a query of the same
    partition running all along (moto raised "dictionary changed size during iteration" there; without the lock
    this test fails in most runs, a race being a matter of chance)."""
    from tests.fixtures.state_table import create_state_table

    state = create_state_table("state")
    for n in range(100):  # moto's query walks the whole table while the other threads add to it
        state.put("lease#ds", f"old_{n:03d}", {"holder": "earlier"})
    winners: list[str] = []
    errors: list[BaseException] = []

    def contend(name: str) -> None:
        try:
            for n in range(40):
                if state.put_if(
                    "lease#ds",
                    f"cus_{n}",
                    {"holder": name},
                    "attribute_not_exists(pk) OR holder = :me",
                    {":me": "nobody"},
                ):
                    winners.append(f"cus_{n}")
                list(state.query("lease#ds"))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=contend, args=(f"instance-{i}",)) for i in range(8)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often, as on a busy machine: a race shows up in a short test
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert errors == []
    assert sorted(winners) == sorted(f"cus_{n}" for n in range(40))  # each lease granted once, to one instance


def test_a_query_reads_its_partition_in_order_with_prefix_and_pages_among_many_others(sqs: Any) -> None:
    """moto's query sorted the whole table each time; now only the partition: the answers must not change."""
    from tests.fixtures.state_table import create_state_table

    state = create_state_table("state")
    for n in range(30):
        state.put("uploaders", f"i{n:02d}", {"expires_at": n})
        state.put(f"lease#ds{n % 3}", f"cus_{n:02d}", {"holder": "x"})
    assert [item["sk"] for item in state.query("uploaders")] == [f"i{n:02d}" for n in range(30)]
    assert [item["sk"] for item in state.query("lease#ds1", "cus_1")] == ["cus_10", "cus_13", "cus_16", "cus_19"]
    assert list(state.query("nobody")) == []
    # Pages: DynamoDB's Limit and ExclusiveStartKey, newest first.
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    first = dynamodb.query(
        TableName="state",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "uploaders"}},
        Limit=7,
        ScanIndexForward=False,
    )
    assert [i["sk"]["S"] for i in first["Items"]] == [f"i{n:02d}" for n in range(29, 22, -1)]
    rest = dynamodb.query(
        TableName="state",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "uploaders"}},
        ExclusiveStartKey=first["LastEvaluatedKey"],
        ScanIndexForward=False,
    )
    assert [i["sk"]["S"] for i in rest["Items"]] == [f"i{n:02d}" for n in range(22, -1, -1)]


def _transaction_outcomes(dynamodb: Any) -> list[Any]:
    """What a series of transactions does to a small table: each one's error (code and reasons) and the items after."""
    outcomes: list[Any] = []

    def put(sk: str, holder: str, condition: str = "attribute_not_exists(pk)") -> dict[str, Any]:
        return {
            "Put": {
                "TableName": "state",
                "Item": {"pk": {"S": "lease#ds"}, "sk": {"S": sk}, "holder": {"S": holder}},
                "ConditionExpression": condition,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def delete(sk: str, holder: str) -> dict[str, Any]:
        return {
            "Delete": {
                "TableName": "state",
                "Key": {"pk": {"S": "lease#ds"}, "sk": {"S": sk}},
                "ConditionExpression": "holder = :me",
                "ExpressionAttributeValues": {":me": {"S": holder}},
            }
        }

    transactions = [
        [put("a", "one"), put("b", "one")],  # all hold: both written
        [put("c", "two"), put("a", "two"), put("d", "two")],  # `a` is held: nothing written, reasons per action
        [delete("a", "two"), delete("b", "one")],  # not two's lease: nothing deleted
        [delete("a", "one"), put("c", "two")],  # both hold
        [put("e", "three"), put("e", "three")],  # two actions on one item: refused whole
    ]
    for actions in transactions:
        try:
            dynamodb.transact_write_items(TransactItems=actions)
            outcomes.append(None)
        except dynamodb.exceptions.ClientError as error:
            outcomes.append((error.response["Error"]["Code"], error.response.get("CancellationReasons")))
        items = dynamodb.scan(TableName="state")["Items"]
        outcomes.append(sorted((i["sk"]["S"], i["holder"]["S"]) for i in items))
    return outcomes


def test_transactions_checked_first_do_what_motos_own_do(sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The patched TransactWriteItems (no table copies) against moto's own, on the same transactions: the same
    items written or not, the same errors and cancellation reasons."""
    from moto.dynamodb.models import DynamoDBBackend

    from tests.fixtures.state_table import create_state_table

    original = moto_fixes._ORIGINALS["transact_write_items"]
    assert DynamoDBBackend.transact_write_items is not original  # the patched one runs first
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_state_table("state")
    patched = _transaction_outcomes(dynamodb)
    dynamodb.delete_table(TableName="state")
    create_state_table("state")
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", original)
    own = _transaction_outcomes(dynamodb)
    assert patched == own
    held_by_one = {"pk": {"S": "lease#ds"}, "sk": {"S": "a"}, "holder": {"S": "one"}}
    assert patched[2][1][1] == {
        "Code": "ConditionalCheckFailed",
        "Message": "The conditional request failed",
        "Item": held_by_one,
    }
    assert patched[-1] == [("b", "one"), ("c", "two")]


def test_the_server_finds_each_hosts_service_as_motos_own_dispatcher_does(sqs: Any) -> None:
    """The dispatcher's answer kept per host is the answer moto's own lookup gives, asked once or many times, for
    the hosts the local runtime's clients send (each service of the template, by endpoint and by service name),
    one moto does not serve, and none."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = moto_fixes._ORIGINALS["get_backend_for_host"]
    assert DomainDispatcherApplication.get_backend_for_host is not original
    dispatcher = DomainDispatcherApplication(create_app=lambda service: None)  # type: ignore[arg-type,return-value]
    hosts: list[str | None] = [
        f"{service}.{REGION}.amazonaws.com"
        for service in ("s3", "sqs", "dynamodb", "secretsmanager", "ssm", "events", "scheduler", "kms", "logs")
    ]
    hosts += ["s3.amazonaws.com", "bucket.s3.amazonaws.com", "sqs", "dynamodb", "moto_api", "example.org", None]
    expected = {host: original(dispatcher, host) for host in hosts}
    assert expected["s3.us-east-1.amazonaws.com"] == "s3" and expected["example.org"] is None
    for _ in range(3):
        assert {host: dispatcher.get_backend_for_host(host) for host in hosts} == expected
