"""Subscription events: create, list, update, delete (docs/sources.md#cm-subscription-events). They do not change MRR:
for a Custom source ChartMogul's MRR comes from invoices (docs/sources.md#cm-subscription-events)."""

from __future__ import annotations

from typing import Any

from localdev.chartmogul_emulator.api_sources import require_data_source
from localdev.chartmogul_emulator.core import Emulator
from localdev.chartmogul_emulator.responses import APIProblem, coded_error, field_errors, not_found
from localdev.chartmogul_emulator.validation import (
    ISO_CURRENCIES,
    SchemaError,
    expect_enum,
    expect_timestamp,
    expect_type,
    format_event_timestamp,
    is_blank,
    parse_timestamp,
)
from localdev.emulator_kit import Request, Response, Router, empty_response, json_response

EVENT_NOT_FOUND = "Subscription event not found"
EVENT_EXISTS = "has already been taken"  # [inf] the generic duplicate wording (docs/sources.md#cm-summary)
BLANK = "can't be blank"
EVENT_TYPES = (  # docs/sources.md#cm-subscription-events
    "subscription_start",
    "subscription_start_scheduled",
    "scheduled_subscription_start_retracted",
    "subscription_updated",
    "subscription_update_scheduled",
    "scheduled_subscription_update_retracted",
    "subscription_cancelled",
    "subscription_cancellation_scheduled",
    "scheduled_subscription_cancellation_retracted",
    "subscription_event_retracted",
)
# docs/sources.md#cm-subscription-events: start/update events (and their scheduled forms) carry the plan and the amount.
_PRICED_TYPES = (
    "subscription_start",
    "subscription_start_scheduled",
    "subscription_updated",
    "subscription_update_scheduled",
)
_STRING_FIELDS = (
    "data_source_uuid",
    "customer_external_id",
    "subscription_external_id",
    "subscription_set_external_id",
    "plan_external_id",
    "currency",
    "external_id",
    "retracted_event_id",
)
_INT_FIELDS = ("amount_in_cents", "quantity", "tax_amount_in_cents", "event_order")


def _check_schema(event: dict[str, Any]) -> None:
    for key in _STRING_FIELDS:
        expect_type(event, key, str, f"subscription_event[{key}]")
    for key in _INT_FIELDS:
        expect_type(event, key, int, f"subscription_event[{key}]")
    expect_enum(event, "event_type", EVENT_TYPES, "subscription_event[event_type]")
    expect_timestamp(event, "event_date", "subscription_event[event_date]")
    expect_timestamp(event, "effective_date", "subscription_event[effective_date]")


def _required_errors(event: dict[str, Any]) -> dict[str, str]:
    required = ["customer_external_id", "event_type", "event_date", "effective_date", "subscription_external_id"]
    if event.get("event_type") in _PRICED_TYPES:
        required += ["plan_external_id", "currency", "amount_in_cents", "quantity"]
    if event.get("event_type") == "subscription_event_retracted":
        required.append("retracted_event_id")
    errors = {key: BLANK for key in required if is_blank(event.get(key))}
    currency = event.get("currency")
    if isinstance(currency, str) and currency and currency.upper() not in ISO_CURRENCIES:
        errors["currency"] = "is not a valid ISO 4217 currency code"
    return errors


def _event_doc(event_id: int, event: dict[str, Any], now: str) -> dict[str, Any]:
    def moment(key: str) -> str | None:
        parsed = parse_timestamp(event.get(key))
        return format_event_timestamp(parsed) if parsed else None

    # docs/sources.md#cm-subscription-events (recorded 2023 shape): absent optional fields are null, never "" (the
    # client rejects "").
    return {
        "id": event_id,
        "data_source_uuid": event["data_source_uuid"],
        "customer_external_id": event["customer_external_id"],
        "subscription_set_external_id": event.get("subscription_set_external_id"),
        "subscription_external_id": event.get("subscription_external_id"),
        "plan_external_id": event.get("plan_external_id"),
        "event_date": moment("event_date"),
        "effective_date": moment("effective_date"),
        "event_type": event["event_type"],
        "external_id": event.get("external_id"),
        "errors": {},
        "created_at": now,
        "updated_at": now,
        "quantity": event.get("quantity"),
        "currency": event.get("currency"),
        "amount_in_cents": event.get("amount_in_cents"),
        "tax_amount_in_cents": event.get("tax_amount_in_cents"),
        "retracted_event_id": event.get("retracted_event_id"),
        "event_order": event.get("event_order"),
    }


def create_event(emulator: Emulator, event: dict[str, Any]) -> dict[str, Any]:
    """Store a subscription event (docs/sources.md#cm-subscription-events); raises `APIProblem`/`SchemaError` on invalid
    input."""
    store = emulator.store
    _check_schema(event)
    require_data_source(emulator, event)
    errors = _required_errors(event)
    if event.get("external_id") and store.exists(
        "subscription_events", data_source_uuid=event["data_source_uuid"], external_id=event["external_id"]
    ):
        errors["external_id"] = EVENT_EXISTS
    if errors:
        raise APIProblem(field_errors(errors))
    seq = store.insert(
        "subscription_events",
        None,
        data_source_uuid=event["data_source_uuid"],
        external_id=event.get("external_id"),
        customer_external_id=event["customer_external_id"],
        subscription_external_id=event.get("subscription_external_id"),
        event_type=event["event_type"],
    )
    doc = _event_doc(seq, event, format_event_timestamp(emulator.now()))
    store.update("subscription_events", {"seq": seq}, doc)
    return doc


def register(router: Router, emulator: Emulator) -> None:
    store = emulator.store

    def envelope(request: Request) -> dict[str, Any]:
        """docs/sources.md#cm-subscription-events: bodies are wrapped in `subscription_event` (the client may also send
        them flat)."""
        body = emulator.body_object(request)
        event = body.get("subscription_event", body)
        if not isinstance(event, dict):
            raise SchemaError("subscription_event")
        return event

    def identify(event: dict[str, Any]) -> dict[str, Any]:
        """docs/sources.md#cm-subscription-events: by `id`, or by `external_id` + `data_source_uuid`."""
        if event.get("id") is not None:
            try:
                where: dict[str, Any] = {"seq": int(event["id"])}
            except (TypeError, ValueError):
                raise SchemaError("subscription_event[id]") from None
        elif event.get("external_id") and event.get("data_source_uuid"):
            where = {"external_id": event["external_id"], "data_source_uuid": event["data_source_uuid"]}
        else:
            raise APIProblem(coded_error(400, "Pass an id, or an external_id with a data_source_uuid", "id"))
        found = store.rows("subscription_events", limit=1, **where)
        if not found:
            raise APIProblem(not_found(EVENT_NOT_FOUND))
        return found[0][1]

    @router.route("POST", "/v1/subscription_events")
    def create(request: Request) -> Response:
        return json_response(201, create_event(emulator, envelope(request)))

    @router.route("GET", "/v1/subscription_events")
    def list_all(request: Request) -> Response:
        where = {
            key: request.query_one(key)
            for key in (
                "data_source_uuid",
                "external_id",
                "customer_external_id",
                "subscription_external_id",
                "event_type",
            )
            if request.query_one(key)
        }
        response = emulator.page(request, "subscription_events", "subscription_events", lambda docs: docs, where=where)
        return response

    @router.route("PATCH", "/v1/subscription_events")
    def modify(request: Request) -> Response:
        changes = envelope(request)
        _check_schema(changes)
        doc = identify(changes)
        merged = {**doc, **{key: value for key, value in changes.items() if key not in ("id", "data_source_uuid")}}
        errors = _required_errors(merged)
        if errors:
            return field_errors(errors)
        updated = _event_doc(doc["id"], merged, doc["created_at"])
        updated["updated_at"] = format_event_timestamp(emulator.now())
        store.update("subscription_events", {"seq": doc["id"]}, updated, event_type=updated["event_type"])
        return json_response(200, updated)  # docs/sources.md#cm-subscription-events (recorded): 200 with the full event

    @router.route("DELETE", "/v1/subscription_events")
    def delete(request: Request) -> Response:
        # docs/sources.md#cm-subscription-events: the Python client sends a JSON body, Ruby the query
        # `subscription_event[id]=…`
        event = envelope(request) if request.body.strip() else {}
        if not event:
            event = {
                key: request.query_one(f"subscription_event[{key}]")
                for key in ("id", "external_id", "data_source_uuid")
                if request.query_one(f"subscription_event[{key}]")
            }
        doc = identify(event)
        store.delete("subscription_events", seq=doc["id"])
        return empty_response(204)  # docs/sources.md#cm-subscription-events (recorded)
