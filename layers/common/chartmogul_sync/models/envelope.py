"""Queue messages: an envelope around a snapshot (raw queue) or a bundle (upload queue).

A payload too large for SQS travels in S3 and the envelope carries a claim check instead (docs/architecture.md
"Contracts between the stages", docs/formats.md).
"""

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, Strict, ValidationInfo, field_validator, model_validator

from .bundle import CustomerBundle
from .common import InboundModel, NonEmptyStr, UtcDatetime
from .snapshot import CustomerSnapshot

SCHEMA_VERSION: Literal[1] = 1


def _exact_schema_version(version: int) -> int:
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema version {version} is not this code's ({SCHEMA_VERSION})")
    return version


# Exactly the integer 1: `1.0` or `true` (which a lax integer would take for 1) are another producer's bug.
SchemaVersion = Annotated[int, Strict(), AfterValidator(_exact_schema_version)]


class MessageKind(StrEnum):
    CUSTOMER_SNAPSHOT = "customer_snapshot"
    CUSTOMER_BUNDLE = "customer_bundle"


class ClaimCheck(InboundModel):
    bucket: NonEmptyStr
    key: NonEmptyStr
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)


class _Envelope(InboundModel):
    schema_version: SchemaVersion = SCHEMA_VERSION
    source: NonEmptyStr = "stripe"
    customer_external_id: NonEmptyStr
    # The version of the customer's state: newer wins; an older one arriving late is dropped, not applied.
    snapshot_time: UtcDatetime
    correlation_id: NonEmptyStr
    claim_check: ClaimCheck | None = None
    # How the upload imports this customer: "bulk" (json_imports) for a backfill request, "api" per object; None =
    # the upload function's configured UPLOAD_MODE. Export sets it, transform copies it, upload reads it.
    upload_mode: Literal["api", "bulk"] | None = None

    def idempotency_key(self) -> str:
        """Stable across re-export, redelivery and DLQ replay (unlike the SQS message id)."""
        return f"{self.source}:{self.customer_external_id}:{self.snapshot_time.isoformat()}"


class RawMessage(_Envelope):
    kind: Literal[MessageKind.CUSTOMER_SNAPSHOT] = MessageKind.CUSTOMER_SNAPSHOT
    payload: CustomerSnapshot | None = None

    @field_validator("payload")
    @classmethod
    def _payload_of_this_customer(
        cls, payload: CustomerSnapshot | None, info: ValidationInfo
    ) -> CustomerSnapshot | None:
        if payload is not None:
            _same_customer(info.data.get("customer_external_id"), payload.customer_id, "customer.id")
        return payload

    @model_validator(mode="after")
    def _payload_or_claim_check(self) -> Self:
        _exactly_one_of(self.payload, self.claim_check)
        return self


class UploadMessage(_Envelope):
    kind: Literal[MessageKind.CUSTOMER_BUNDLE] = MessageKind.CUSTOMER_BUNDLE
    payload: CustomerBundle | None = None

    @field_validator("payload")
    @classmethod
    def _payload_of_this_customer(cls, payload: CustomerBundle | None, info: ValidationInfo) -> CustomerBundle | None:
        if payload is not None:
            _same_customer(info.data.get("customer_external_id"), payload.customer.external_id, "customer.external_id")
        return payload

    @model_validator(mode="after")
    def _payload_or_claim_check(self) -> Self:
        _exactly_one_of(self.payload, self.claim_check)
        return self


def _exactly_one_of(payload: object, claim_check: ClaimCheck | None) -> None:
    if (payload is None) == (claim_check is None):
        raise ValueError("a message carries either its payload or a claim_check to it in S3, exactly one")


def _same_customer(envelope_customer: object, payload_customer: str, payload_field: str) -> None:
    # The envelope's customer decides staleness and the per-customer lock downstream: a payload of another customer
    # would be applied under the wrong one. (No envelope customer: its own error is reported already.)
    if isinstance(envelope_customer, str) and envelope_customer != payload_customer:
        raise ValueError(
            f"customer_external_id {envelope_customer!r} differs from the payload's "
            f"{payload_field} {payload_customer!r}"
        )
