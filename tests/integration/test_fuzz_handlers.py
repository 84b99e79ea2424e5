"""Fuzz: malformed records into both SQS-triggered handlers, the template's stack in moto, ChartMogul's emulator.

For every batch: the handler returns (no batch crash). For every record, exactly one of: a result (a bundle on the
upload queue, a customer applied in ChartMogul), a bad record with a reason, or a batch item failure that was
logged at WARNING (stage, customer, reason, correlation id) and whose reason is stored for its dead letter.

The number of records per handler is `CMSYNC_FUZZ_RECORDS` (default: a small sample for CI; the figures reported
for issue 11 come from `CMSYNC_FUZZ_RECORDS=1000 pytest -s tests/integration/test_fuzz_handlers.py`). The run is
seeded (`CMSYNC_FUZZ_SEED`), so a failure replays exactly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from chartmogul_sync.config import STRIPE_API_VERSION
from chartmogul_sync.failures import FailureLedger
from chartmogul_sync.models import UploadMessage
from chartmogul_sync.queues import BadRecord
from chartmogul_sync.state import StateTable
from localdev.aws.lambda_model import sqs_event_record
from localdev.aws.runtime import LocalStack, local_stack
from localdev.chartmogul_emulator import RunningEmulator
from tests.integration.test_transform_handler import paths, rich_snapshot
from tests.integration.upload.conftest import FAST, stack_environment
from tests.unit.upload.bundles import customer_bundle

RECORDS = int(os.environ.get("CMSYNC_FUZZ_RECORDS", "120"))
SEED = int(os.environ.get("CMSYNC_FUZZ_SEED", "11"))
UNREADABLE_BUCKET = "fuzz-no-such-bucket"  # S3 answers NoSuchBucket: a transient read failure, retried by SQS


@dataclass
class Captured(logging.Handler):
    """The lines a function's Powertools logger writes (INFO and up), as the JSON CloudWatch would hold."""

    formatter_of: Any
    lines: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(self.formatter_of)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def __hash__(self) -> int:
        return id(self)


@dataclass
class FuzzReport:
    handler: str
    records: int = 0
    batches: int = 0
    batch_crashes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failed_without_warning: list[str] = field(default_factory=list)
    failed_without_stored_reason: list[str] = field(default_factory=list)
    bad_records_without_reason: int = 0

    def line(self) -> str:
        return (
            f"fuzz {self.handler}: {self.records} malformed records in {self.batches} batches, "
            f"{self.batch_crashes} batch crashes, outcomes {dict(sorted(self.outcomes.items()))}, "
            f"{len(self.failed_without_warning)} failed without a WARNING line, "
            f"{len(self.failed_without_stored_reason)} failed without a stored reason, "
            f"{self.bad_records_without_reason} bad records without a reason"
        )


@pytest.fixture(scope="module")
def world(emulator_for_fuzz: RunningEmulator) -> Iterator[LocalStack]:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    with local_stack(options=FAST, environment=stack_environment(emulator_for_fuzz)) as stack:
        stack.put_secret_value("ChartMogulApiKeySecret", emulator_for_fuzz.api_key)
        yield stack


@pytest.fixture(scope="module")
def emulator_for_fuzz() -> Iterator[RunningEmulator]:
    import datetime as dt

    from localdev.chartmogul_emulator import start

    with start(now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC)) as running:
        yield running


# ---------------------------------------------------------------- malformed input

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    "",
    "x",
    "1700000000",
    [],
    {},
    1_767_225_600_000,  # a time in milliseconds
    2**63,
    -(2**40),
    {"id": "cus_other"},
    "cus_someone_else",
    STRIPE_API_VERSION.replace("endive", "clover"),
]


def deeply_nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def garbage(rng: random.Random, index: int) -> str:
    choices: list[Callable[[], str]] = [
        lambda: f"not json {index}",
        lambda: '{"customer_external_id": "cus_g' + str(index),  # truncated
        lambda: json.dumps([index]),
        lambda: "null",
        lambda: json.dumps(index),
        lambda: deeply_nested(rng.choice([300, 5_000, 50_000])),
        lambda: json.dumps({"customer_external_id": f"cus_g{index}", "payload": json.loads(deeply_nested(150))}),
        lambda: "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 60))),
        lambda: json.dumps({"kind": "customer_snapshot", "nested": [[[[[[[[index]]]]]]]]}),
    ]
    return rng.choice(choices)()


def mutate(rng: random.Random, document: dict[str, Any], targets: list[tuple[Any, ...]]) -> dict[str, Any]:
    mutated = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(targets)
        parent: Any = mutated
        try:
            for step in path[:-1]:
                parent = parent[step]
            if rng.random() < 0.3 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return mutated


def envelope(kind: str, customer: str, payload: Any, index: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "kind": kind,
        "customer_external_id": customer,
        "snapshot_time": "2026-01-20T00:00:00Z",
        "correlation_id": f"fuzz-run-{index}",
        "payload": payload,
    }


ENVELOPE_MUTATIONS: list[tuple[str, Any]] = [
    ("schema_version", 1.0),
    ("schema_version", True),
    ("schema_version", 2),
    ("schema_version", "1"),
    ("customer_external_id", "cus_not_the_payloads"),
    ("customer_external_id", ""),
    ("kind", "customer_bundle_v2"),
    ("snapshot_time", "yesterday"),
    ("snapshot_time", 1_767_225_600),
    ("upload_mode", "fast"),
    ("correlation_id", None),
]


def claim_checked(stack: LocalStack, message: dict[str, Any], how: str) -> str:
    payload = json.dumps(message.pop("payload")).encode()
    digest = hashlib.sha256(payload).hexdigest()
    bucket = stack.resource_name("StagingBucket")
    key = f"claim-checks/fuzz/{message['customer_external_id']}/{digest}.json"
    if how == "unreadable":
        bucket = UNREADABLE_BUCKET
    elif how != "missing":
        stack.clients.s3.put_object(Bucket=bucket, Key=key, Body=payload)
    if how == "tampered":
        digest = "0" * 64
    message["claim_check"] = {"bucket": bucket, "key": key, "sha256": digest, "size_bytes": len(payload)}
    return json.dumps(message)


@dataclass(frozen=True)
class Generator:
    kind: str  # customer_snapshot | customer_bundle
    base: dict[str, Any]
    customer: Callable[[dict[str, Any]], str]
    cross_object: Callable[[random.Random, dict[str, Any]], dict[str, Any]]

    def body(self, stack: LocalStack, rng: random.Random, index: int) -> str:
        roll = rng.random()
        payload = copy.deepcopy(self.base)
        if roll < 0.15:
            return garbage(rng, index)
        if roll < 0.55:
            payload = mutate(rng, payload, TARGETS[self.kind])
        elif roll < 0.65:
            payload = self.cross_object(rng, payload)
        customer = self.customer(payload) if isinstance(payload, dict) else f"cus_f{index}"
        message = envelope(self.kind, customer if isinstance(customer, str) else f"cus_f{index}", payload, index)
        if 0.65 <= roll < 0.8:
            name, value = rng.choice(ENVELOPE_MUTATIONS)
            message[name] = value
        if roll >= 0.8:
            return claim_checked(stack, message, rng.choice(["missing", "unreadable", "unreadable", "tampered"]))
        return json.dumps(message)


def snapshot_cross_object(rng: random.Random, snapshot: dict[str, Any]) -> dict[str, Any]:
    choice = rng.randrange(3)
    if choice == 0:
        snapshot["invoices"][0]["customer"] = "cus_someone_else"
    elif choice == 1:
        snapshot["refunds"][0]["amount"] = 10**7  # more than was ever paid
    else:
        snapshot["invoices"][0]["total"] += 1  # lines no longer add up
    return snapshot


def bundle_cross_object(rng: random.Random, bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["invoices"][0]["currency"] = rng.choice(["usd", "XXX", 7])
    return bundle


SNAPSHOT = rich_snapshot()
BUNDLE = json.loads(customer_bundle("cus_fuzz").model_dump_json())
TARGETS = {"customer_snapshot": paths(SNAPSHOT), "customer_bundle": paths(BUNDLE)}
GENERATORS = {
    "TransformFunction": Generator(
        "customer_snapshot", SNAPSHOT, lambda p: (p.get("customer") or {}).get("id"), snapshot_cross_object
    ),
    "UploadFunction": Generator(
        "customer_bundle", BUNDLE, lambda p: (p.get("customer") or {}).get("external_id"), bundle_cross_object
    ),
}
BATCH_SIZES = {"TransformFunction": 10, "UploadFunction": 20}  # template.yaml's


# ---------------------------------------------------------------- the run


def drain_bodies(stack: LocalStack, queue: str) -> list[str]:
    sqs, url = stack.clients.sqs, stack.queue_url(queue)
    bodies: list[str] = []
    for _ in range(10_000):  # bounded: at most RECORDS messages arrive per queue
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        )
    raise AssertionError(f"{queue} did not drain")


def run_fuzz(stack: LocalStack, function: str) -> FuzzReport:
    rng = random.Random(f"{SEED}-{function}")
    generator = GENERATORS[function]
    handler_module = sys.modules[stack.function(function).handler.__module__]
    powertools_logger = handler_module.logger
    captured = Captured(powertools_logger.registered_formatter)
    powertools_logger._logger.addHandler(captured)
    dynamodb = boto3.resource("dynamodb", region_name=stack.region, endpoint_url=stack.endpoint_url)
    ledger = FailureLedger(StateTable(dynamodb, stack.resource_name("StateTable")))
    report = FuzzReport(function)
    queue_arn = stack.queue_arn("RawQueue" if function == "TransformFunction" else "UploadQueue")
    failed_ids: list[str] = []
    try:
        for start in range(0, RECORDS, BATCH_SIZES[function]):
            records = []
            for index in range(start, min(start + BATCH_SIZES[function], RECORDS)):
                body = generator.body(stack, rng, index)
                records.append(
                    sqs_event_record(
                        {
                            "MessageId": f"fuzz-{function}-{index}",
                            "ReceiptHandle": f"rh-{index}",
                            "Body": body,
                            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
                            "Attributes": {"ApproximateReceiveCount": "1"},
                        },
                        queue_arn,
                        stack.region,
                    )
                )
            report.batches += 1
            report.records += len(records)
            try:
                response = stack.invoke(function, {"Records": records})
            except Exception:
                report.batch_crashes += 1
                continue
            failed_ids += [item["itemIdentifier"] for item in response["batchItemFailures"]]
    finally:
        powertools_logger._logger.removeHandler(captured)

    warned = {
        line["message_id"]: line for line in captured.lines if line.get("message_id") and line["level"] == "WARNING"
    }
    for message_id in failed_ids:
        line = warned.get(message_id)
        if line is None or not line.get("reason") or line.get("stage") is None or line.get("level") != "WARNING":
            report.failed_without_warning.append(message_id)
        stored = ledger.last_failure(message_id)
        if stored is None or not stored.reason:
            report.failed_without_stored_reason.append(message_id)
    bad = [BadRecord.model_validate_json(body) for body in drain_bodies(stack, "BadRecordsQueue")]
    report.bad_records_without_reason = sum(1 for record in bad if not record.reason.strip())
    report.outcomes.update(failed=len(failed_ids), bad_record=len(bad))
    if function == "TransformFunction":
        report.outcomes["bundled"] = len(
            [UploadMessage.model_validate_json(b) for b in drain_bodies(stack, "UploadQueue")]
        )
    else:
        # api mode: each record applied (or found unchanged, or stale) logs one "bundle uploaded" line.
        report.outcomes["uploaded"] = sum(1 for line in captured.lines if line["message"] == "bundle uploaded")
    print(report.line())
    return report


@pytest.mark.parametrize("function", ["TransformFunction", "UploadFunction"])
def test_malformed_records_never_crash_a_batch_and_every_failure_has_its_warning_and_stored_reason(
    world: LocalStack, function: str
) -> None:
    report = run_fuzz(world, function)

    assert report.batch_crashes == 0
    assert report.failed_without_warning == []
    assert report.failed_without_stored_reason == []
    assert report.bad_records_without_reason == 0
    # Nothing lost: every record ended in exactly one outcome, and the fuzz did reach each kind of ending.
    assert sum(report.outcomes.values()) == report.records
    assert report.outcomes["failed"] > 0 and report.outcomes["bad_record"] > 0
    assert report.outcomes["bundled" if function == "TransformFunction" else "uploaded"] > 0
