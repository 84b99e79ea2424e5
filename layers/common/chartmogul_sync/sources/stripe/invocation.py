"""The export function's input: what the schedule, a person or a continuation asks it to do.

EventBridge Scheduler delivers the schedule's `Input` verbatim, not an EventBridge envelope (reference
docs/sources.md#aws-scheduler); template.yaml's is `{"mode":"incremental","scheduled_time":
"<aws.scheduler.scheduled-time>"}`, and the scheduled time names the run.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator

from ...models.common import UtcDatetime
from .backfill import BackfillRange


class _Request(BaseModel):
    # A request is a command: a misspelt field ("form" for "from") must fail, not widen a backfill to all history.
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncrementalRequest(_Request):
    mode: Literal["incremental"]
    # Absent when invoked by hand; then the run is named after its invocation.
    scheduled_time: UtcDatetime | None = None

    def run_id_for(self, invocation_id: str) -> str:
        if self.scheduled_time is not None:
            return f"incremental-{self.scheduled_time.strftime('%Y%m%dT%H%M%SZ')}"
        return f"incremental-{invocation_id}"


class BackfillRequest(_Request):
    """`{"mode": "backfill", "from": "2023-01-01", "to": "2024-01-01"}`: customers created in [from, to)."""

    mode: Literal["backfill"]
    created_from: date | None = Field(default=None, alias="from")
    created_to: date | None = Field(default=None, alias="to")
    # Give one to resume a run by hand; otherwise the invocation id names it (a retry by Lambda keeps it).
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    # How the upload function imports the run's customers; None: bulk (`json_imports`), a backfill's default.
    upload_mode: Literal["api", "bulk"] | None = None

    @field_validator("created_to")
    @classmethod
    def _from_before_to(cls, created_to: date | None, info: ValidationInfo) -> date | None:
        # On `to`, so that the error names a field (a model-level error has no location).
        created_from = info.data.get("created_from")
        if created_from is not None and created_to is not None and created_from >= created_to:
            raise ValueError(f"must be after 'from' ({created_from}): the range [from, to) would be empty")
        return created_to

    @property
    def range(self) -> BackfillRange:
        return BackfillRange(created_from=self.created_from, created_to=self.created_to)

    @property
    def effective_upload_mode(self) -> Literal["api", "bulk"]:
        return self.upload_mode or "bulk"

    def run_id_for(self, invocation_id: str) -> str:
        if self.run_id is not None:
            return self.run_id
        digest = hashlib.sha256(f"{self.created_from}|{self.created_to}|{invocation_id}".encode()).hexdigest()
        return f"backfill-{digest[:16]}"


class CustomerRequest(_Request):
    mode: Literal["customer"]
    customer_id: str = Field(pattern=r"^cus_[A-Za-z0-9]+$")

    def run_id_for(self, invocation_id: str) -> str:
        return f"customer-{self.customer_id}-{invocation_id}"


class ContinuationRequest(_Request):
    mode: Literal["continuation"]
    resume: Literal["incremental", "backfill"]
    run_id: str = Field(min_length=1)

    def run_id_for(self, invocation_id: str) -> str:
        return self.run_id


# Every request names its run: `run_id_for(invocation id)` is the correlation id of everything the run does.
ExportRequest = Annotated[
    IncrementalRequest | BackfillRequest | CustomerRequest | ContinuationRequest, Field(discriminator="mode")
]
_adapter: TypeAdapter[ExportRequest] = TypeAdapter(ExportRequest)


class InvalidExportRequest(ValueError):
    """The event is not one the export function understands; the message names each field at fault."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields  # the fields at fault, in the event's terms ("from", "mode"); empty: the whole event

    @property
    def field(self) -> str | None:
        return ", ".join(self.fields) or None


def parse_export_request(event: Any) -> ExportRequest:
    try:
        return _adapter.validate_python(event)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        described = "; ".join(_describe(problem) for problem in problems)
        fields = tuple(dict.fromkeys(f for problem in problems if (f := _field_of(problem)) is not None))
        raise InvalidExportRequest(f"invalid export event: {described}", fields) from None


def _field_of(problem: Any) -> str | None:
    if problem.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        return "mode" if isinstance(problem.get("input"), dict) else None
    location = [str(part) for part in problem.get("loc", ())]
    return ".".join(location[1:]) or None


def _describe(problem: Any) -> str:
    # The first location item is the union member's tag ("backfill"); the field follows it.
    location = [str(part) for part in problem.get("loc", ())]
    if problem.get("type") == "union_tag_invalid":
        return (
            "field 'mode' must be one of 'incremental', 'backfill', 'customer', 'continuation' "
            f"(got {problem.get('input', {}).get('mode')!r})"
            if isinstance(problem.get("input"), dict)
            else "the event must be a JSON object with a 'mode'"
        )
    if problem.get("type") == "union_tag_not_found":
        return "field 'mode' is missing (one of 'incremental', 'backfill', 'customer', 'continuation')"
    if problem.get("type") == "extra_forbidden":
        return f"field '{'.'.join(location[1:])}' is not known here (a misspelt field?)"
    if problem.get("type") == "model_attributes_type":
        return "the event must be a JSON object with a 'mode'"
    message = str(problem.get("msg", "")).removeprefix("Value error, ")
    if len(location) <= 1:
        return message
    return f"field '{'.'.join(location[1:])}': {message} (got {problem.get('input')!r})"


__all__ = [
    "BackfillRequest",
    "ContinuationRequest",
    "CustomerRequest",
    "ExportRequest",
    "IncrementalRequest",
    "InvalidExportRequest",
    "parse_export_request",
]
