"""Where a sync's state lives: a deployed stack (`--stack NAME`) or a local sync's state directory (`--state-dir`).

A deployed stack is found through CloudFormation (its resources by logical id, as template.yaml names them).
A state directory is what `cmsync sync --local` leaves behind: `state.json` (every item of the DynamoDB state
table: incremental cursor, id map, applied bundle versions, backfill checkpoints) and `dead-letters.json` (what
waited in the bad-records queue and the DLQs when the run ended).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ..config import Settings
from ..failures import FailureLedger
from ..sinks.chartmogul.dlq import QUEUE_NAMES, STACK_QUEUES, QueuedMessage, describe, failed_function_of
from ..state import StateTable

STATE_FILE = "state.json"
DEAD_LETTERS_FILE = "dead-letters.json"

# Queue name → template.yaml logical id, as `cmsync dlq` names them; a stack without the near-real-time path has no
# Stripe events queue or DLQ, and the commands leave out what the stack does not hold.
QUEUES = STACK_QUEUES
# What waits in these waits for a person: `status` and `check` fail while any holds a message.
TERMINAL_QUEUES = QUEUE_NAMES
# The work queues whose oldest message's age `status` shows (each has an OldestMessage alarm in template.yaml).
AGED_QUEUES = ("raw", "upload", "stripe-events")
# How far back `status` looks for SQS's ApproximateAgeOfOldestMessage (SQS publishes it every minute or so, and
# not at all for a queue that has been empty for hours: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html).
_AGE_LOOKBACK_S = 15 * 60


class StackError(ValueError):
    pass


@dataclass
class DeployedStack:
    name: str
    session: Any  # boto3.session.Session
    resources: dict[str, str] = field(default_factory=dict)  # logical id → physical id
    types: dict[str, str] = field(default_factory=dict)  # logical id → resource type (AWS::SQS::Queue, …)

    @classmethod
    def find(cls, name: str, session: Any = None) -> DeployedStack:
        import boto3

        session = session or boto3.session.Session()
        resources: dict[str, str] = {}
        types: dict[str, str] = {}
        try:
            # ListStackResources, paged: DescribeStackResources answers only a stack's first 100 resources, and SAM
            # makes more than that of template.yaml (roles, permissions, event source mappings, schedules).
            for page in session.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=name):
                for resource in page.get("StackResourceSummaries", []):
                    resources[resource["LogicalResourceId"]] = resource.get("PhysicalResourceId", "")
                    types[resource["LogicalResourceId"]] = resource.get("ResourceType", "")
        except Exception as error:  # botocore's ClientError, NoCredentialsError…: one line, not a traceback
            raise StackError(f"stack {name!r}: {error}") from error
        return cls(name, session, resources, types)

    def physical(self, logical_id: str) -> str:
        if not self.resources.get(logical_id):
            raise StackError(f"stack {self.name!r} has no resource {logical_id}")
        return self.resources[logical_id]

    def settings(self, base: Settings) -> Settings:
        """The settings the stack's functions run with, as far as the commands need them: every queue URL, the
        state table and the export and audit functions (as `cmsync dlq --stack` finds them), and the staging
        bucket."""
        from ..sinks.chartmogul.dlq import QueueNotFound, settings_from_stack

        try:
            found = settings_from_stack(self.session.client("cloudformation"), self.name, base)
        except QueueNotFound as error:
            raise StackError(str(error)) from error
        return found.model_copy(update={"staging_bucket": self.physical("StagingBucket")})

    def secret(self, logical_id: str) -> str:
        client = self.session.client("secretsmanager")
        secret_id = self.physical(logical_id)
        try:
            value = client.get_secret_value(SecretId=secret_id).get("SecretString", "")
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
            if code == "ResourceNotFoundException":
                # The template creates the secrets empty; the user puts the key in (README "Deploy").
                raise StackError(
                    f"secret {logical_id} of stack {self.name!r} has no value yet: "
                    f"aws secretsmanager put-secret-value --secret-id {_secret_name(secret_id)} --secret-string '…'"
                ) from error
            raise StackError(f"secret {logical_id} of stack {self.name!r} cannot be read: {code}") from error
        if not str(value).strip():
            raise StackError(f"secret {logical_id} of stack {self.name!r} is empty: put the API key in it")
        return str(value).strip()

    def state(self) -> StateTable:
        return StateTable(self.session.resource("dynamodb"), self.physical("StateTable"))

    def sqs(self) -> Any:
        return self.session.client("sqs")

    def queue_depths(self) -> dict[str, int]:
        sqs = self.sqs()
        depths = {}
        for name, logical_id in QUEUES.items():
            if logical_id not in self.resources:
                continue
            attributes = sqs.get_queue_attributes(
                QueueUrl=self.resources[logical_id],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            depths[name] = sum(int(v) for v in attributes.values())
        return depths

    def oldest_message_ages(self) -> dict[str, float | None]:
        """Seconds the oldest message of each work queue has waited (SQS's ApproximateAgeOfOldestMessage, the
        metric the OldestMessage alarms watch; SQS has no queue attribute for it), None when CloudWatch has no
        recent figure. Only the queues the stack holds."""
        cloudwatch = self.session.client("cloudwatch")
        now = dt.datetime.now(dt.UTC)
        ages: dict[str, float | None] = {}
        for name in AGED_QUEUES:
            url = self.resources.get(QUEUES[name])
            if not url:
                continue
            try:
                points = cloudwatch.get_metric_statistics(
                    Namespace="AWS/SQS",
                    MetricName="ApproximateAgeOfOldestMessage",
                    Dimensions=[{"Name": "QueueName", "Value": url.rstrip("/").rsplit("/", 1)[-1]}],
                    StartTime=now - dt.timedelta(seconds=_AGE_LOOKBACK_S),
                    EndTime=now + dt.timedelta(seconds=60),  # the current minute too
                    Period=60,
                    Statistics=["Maximum"],
                )["Datapoints"]
            except Exception:  # no cloudwatch:GetMetricStatistics, say: the age is unknown, the rest still shows
                points = []
            newest = max(points, key=lambda point: point["Timestamp"], default=None)
            ages[name] = float(newest["Maximum"]) if newest is not None else None
        return ages

    def schedule_state(self) -> str:
        """ENABLED / DISABLED of the incremental schedule (EventBridge Scheduler), "none" without one."""
        return self._schedule_of("ExportFunction")

    def audit_schedule_state(self) -> str:
        """ENABLED / DISABLED of the daily audit's schedule, "none" without one."""
        return self._schedule_of("AuditFunction")

    def _schedule_of(self, function: str) -> str:
        """ENABLED / DISABLED of a function's schedule, "none" without one.

        SAM names the schedule of a ScheduleV2 event `<function><event>` (template.yaml: ExportFunction's
        IncrementalSchedule, AuditFunction's DailyAudit)."""
        schedules = sorted(
            logical
            for logical, kind in self.types.items()
            if kind == "AWS::Scheduler::Schedule" and logical.startswith(function)
        )
        if not schedules:
            return "none"
        # A schedule's physical id is its name (with its group before a "|" where CloudFormation shows one).
        name = self.resources[schedules[0]].split("|")[-1]
        try:
            schedule = self.session.client("scheduler").get_schedule(Name=name)
        except Exception as error:
            return f"unknown ({type(error).__name__})"
        return str(schedule["State"])


def _secret_name(secret_id: str) -> str:
    """A secret's name from its ARN (`arn:…:secret:NAME-AbCdEf`), for the command to put its value."""
    if not secret_id.startswith("arn:"):
        return secret_id
    name = secret_id.split(":secret:", 1)[-1]
    return name.rsplit("-", 1)[0] if "-" in name else name


class SavedState(StateTable):
    """The state table of a local sync, read from its state directory (read only)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:  # no DynamoDB: items are in memory
        self._items = {(str(item["pk"]), str(item["sk"])): item for item in items}

    @classmethod
    def load(cls, state_dir: Path) -> SavedState:
        return cls(load_state_items(state_dir))

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self._items.get((pk, sk))

    def get_many(self, keys: Iterable[tuple[str, str]], sleep: Any = None) -> dict[tuple[str, str], dict[str, Any]]:
        return {k: self._items[k] for k in keys if k in self._items}

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[dict[str, Any]]:
        for (item_pk, item_sk), item in sorted(self._items.items()):
            if item_pk == pk and item_sk.startswith(sk_prefix):
                yield item

    def items(self) -> list[dict[str, Any]]:
        return list(self._items.values())

    def scan(self, pk_prefix: str, max_pages: int = 100_000) -> Iterator[dict[str, Any]]:
        for (item_pk, _), item in sorted(self._items.items()):
            if item_pk.startswith(pk_prefix):
                yield item

    def put(self, pk: str, sk: str, attributes: Mapping[str, Any]) -> None:
        raise PermissionError("a saved state directory is read only here")

    def put_if_newer(self, pk: str, sk: str, version_field: str, version: str, attributes: Mapping[str, Any]) -> bool:
        raise PermissionError("a saved state directory is read only here")

    def delete(self, pk: str, sk: str) -> None:
        raise PermissionError("a saved state directory is read only here")


def load_state_items(state_dir: Path) -> list[dict[str, Any]]:
    """The state table's items as plain JSON values (strings and numbers)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return []
    document = json.loads(path.read_text())
    items: list[dict[str, Any]] = document["items"]
    return items


def save_state_items(state_dir: Path, items: list[dict[str, Any]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    document = {"format": "chartmogul-sync/state/1", "items": sorted(items, key=lambda i: (i["pk"], i["sk"]))}
    temporary = state_dir / f"{STATE_FILE}.tmp"
    temporary.write_text(json.dumps(document, indent=1, sort_keys=True, default=str))
    temporary.replace(state_dir / STATE_FILE)  # a crash leaves the previous state whole


class DeadLetter(TypedDict):
    """One entry of `dead-letters.json`: a record of a terminal queue, with its reason as `cmsync dlq list` has it."""

    queue: str  # one of QUEUE_NAMES
    id: str  # its SQS message id (the failure ledger's key)
    body: str
    customer_external_id: str | None
    reason: str


def dead_letter(queue: str, message: QueuedMessage) -> DeadLetter:
    return {
        "queue": queue,
        "id": message.message_id,
        "body": message.body,
        "customer_external_id": message.customer_external_id,
        "reason": message.reason,
    }


def load_dead_letters(state_dir: Path) -> list[tuple[str, QueuedMessage]]:
    """(queue, message) for every record that waited in a terminal queue when the local sync ended, read as
    `cmsync dlq list` reads that queue: by its kind (a failed audit's record in audit-failed) and with the last
    failure recorded for its message id (the saved state table's failure ledger)."""
    path = state_dir / DEAD_LETTERS_FILE
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    failures = FailureLedger(SavedState.load(state_dir)).last_failure
    return [
        (
            entry["queue"],
            describe({"MessageId": entry["id"], "Body": entry["body"]}, failures, failed_function_of(entry["queue"])),
        )
        for entry in saved
    ]


def save_dead_letters(state_dir: Path, letters: list[DeadLetter]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / DEAD_LETTERS_FILE).write_text(json.dumps(letters, indent=1))


def parked_from_saved(letters: list[tuple[str, QueuedMessage]]) -> dict[str, str]:
    parked: dict[str, str] = {}
    for queue, message in letters:
        if message.customer_external_id:
            parked.setdefault(message.customer_external_id, f"{queue}: {message.reason}")
    return parked
