"""Where a sync's state lives: a deployed stack (`--stack NAME`) or a local sync's state directory (`--state-dir`).

A deployed stack is found through CloudFormation (its resources by logical id, as template.yaml names them).
A state directory is what `cmsync sync --local` leaves behind: `state.json` (every item of the DynamoDB state
table: incremental cursor, id map, applied bundle versions, backfill checkpoints) and `dead-letters.json` (what
waited in the bad-records queue and the DLQs when the run ended).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..sinks.chartmogul.dlq import QueuedMessage, describe
from ..state import StateTable

STATE_FILE = "state.json"
DEAD_LETTERS_FILE = "dead-letters.json"

# template.yaml logical ids
QUEUES = {
    "raw": "RawQueue",
    "raw-dlq": "RawDeadLetterQueue",
    "upload": "UploadQueue",
    "upload-dlq": "UploadDeadLetterQueue",
    "bad-records": "BadRecordsQueue",
    "export-failed": "ExportFailedQueue",
    "schedule-dlq": "ScheduleDeadLetterQueue",
}
TERMINAL_QUEUES = ("bad-records", "raw-dlq", "upload-dlq", "export-failed", "schedule-dlq")


class StackError(ValueError):
    pass


@dataclass
class DeployedStack:
    name: str
    session: Any  # boto3.session.Session
    resources: dict[str, str] = field(default_factory=dict)  # logical id → physical id

    @classmethod
    def find(cls, name: str, session: Any = None) -> DeployedStack:
        import boto3

        session = session or boto3.session.Session()
        try:
            answer = session.client("cloudformation").describe_stack_resources(StackName=name)
        except Exception as error:  # botocore's ClientError, NoCredentialsError…: one line, not a traceback
            raise StackError(f"stack {name!r}: {error}") from error
        resources = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in answer["StackResources"]}
        return cls(name, session, resources)

    def physical(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise StackError(f"stack {self.name!r} has no resource {logical_id}")
        return self.resources[logical_id]

    def settings(self, base: Settings) -> Settings:
        """The settings the stack's functions run with, as far as the command needs them."""
        return base.model_copy(
            update={
                "state_table": self.physical("StateTable"),
                "staging_bucket": self.physical("StagingBucket"),
                "raw_queue_url": self.physical("RawQueue"),
                "upload_queue_url": self.physical("UploadQueue"),
                "bad_records_queue_url": self.physical("BadRecordsQueue"),
            }
        )

    def secret(self, logical_id: str) -> str:
        client = self.session.client("secretsmanager")
        try:
            value = client.get_secret_value(SecretId=self.physical(logical_id)).get("SecretString", "")
        except Exception as error:
            raise StackError(
                f"secret {logical_id} of stack {self.name!r} cannot be read: {type(error).__name__}"
            ) from error
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

    def schedule_state(self) -> str:
        """ENABLED / DISABLED of the incremental schedule (EventBridge Scheduler)."""
        schedules = [physical for logical, physical in self.resources.items() if "Schedule" in logical]
        schedules = [s for s in schedules if not s.startswith("http")]  # not the schedule's DLQ
        if not schedules:
            return "none"
        name = schedules[0].split("|")[-1]
        try:
            return str(self.session.client("scheduler").get_schedule(Name=name)["State"])
        except Exception as error:
            return f"unknown ({type(error).__name__})"


class SavedState(StateTable):
    """The state table of a local sync, read from its state directory (read only)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:  # no DynamoDB: items are in memory
        self._items = {(str(item["pk"]), str(item["sk"])): item for item in items}

    @classmethod
    def load(cls, state_dir: Path) -> SavedState:
        return cls(load_state_items(state_dir))

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self._items.get((pk, sk))

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[dict[str, Any]]:
        for (item_pk, item_sk), item in sorted(self._items.items()):
            if item_pk == pk and item_sk.startswith(sk_prefix):
                yield item

    def items(self) -> list[dict[str, Any]]:
        return list(self._items.values())

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


def load_dead_letters(state_dir: Path) -> list[tuple[str, QueuedMessage]]:
    """(queue, message) for every record that waited in a terminal queue when the local sync ended."""
    path = state_dir / DEAD_LETTERS_FILE
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    return [(entry["queue"], describe({"MessageId": entry["id"], "Body": entry["body"]})) for entry in saved]


def save_dead_letters(state_dir: Path, letters: list[dict[str, str]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / DEAD_LETTERS_FILE).write_text(json.dumps(letters, indent=1))


def parked_from_saved(letters: list[tuple[str, QueuedMessage]]) -> dict[str, str]:
    parked: dict[str, str] = {}
    for queue, message in letters:
        if message.customer_external_id:
            parked.setdefault(message.customer_external_id, f"{queue}: {message.reason}")
    return parked
