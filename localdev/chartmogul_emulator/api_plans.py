"""Plans (docs/sources.md#cm-plans)."""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from localdev.chartmogul_emulator.api_sources import require_data_source
from localdev.chartmogul_emulator.core import Emulator, new_uuid
from localdev.chartmogul_emulator.responses import APIProblem, field_errors
from localdev.chartmogul_emulator.validation import expect_enum, expect_type, is_blank
from localdev.emulator_kit import Request, Response, Router, empty_response, json_response

PLAN_NOT_FOUND = "Plan not found"
PLAN_EXISTS = "A plan with this identifier already exists in our system."  # docs/sources.md#cm-summary
INTERVAL_UNITS = ("day", "month", "year")  # docs/sources.md#cm-plans: no week unit


def _check_interval(body: dict[str, Any], errors: dict[str, str], required: bool) -> None:
    expect_type(body, "name", str, "name")
    expect_type(body, "interval_count", int, "interval_count")
    expect_enum(body, "interval_unit", INTERVAL_UNITS, "interval_unit")  # docs/sources.md#cm-validation: bad enum → 400
    if required:
        for key in ("name", "interval_count", "interval_unit"):
            if is_blank(body.get(key)):
                errors[key] = "can't be blank"
    count = body.get("interval_count")
    if isinstance(count, int) and count <= 0:
        errors["interval_count"] = "must be greater than 0"  # docs/sources.md#cm-plans: integer > 0


def create_plan(emulator: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    """Store a plan (docs/sources.md#cm-plans); raises `APIProblem`/`SchemaError` on invalid input."""
    store = emulator.store
    data_source_uuid = require_data_source(emulator, body)
    expect_type(body, "external_id", str, "external_id")
    errors: dict[str, str] = {}
    _check_interval(body, errors, required=True)
    # docs/sources.md#cm-plans: without an external_id the API generates one (recorded); never null for the client.
    external_id = body.get("external_id") or str(uuid_module.uuid4())
    if store.exists("plans", data_source_uuid=data_source_uuid, external_id=external_id):
        errors["external_id"] = PLAN_EXISTS
    if errors:
        raise APIProblem(field_errors(errors))
    doc = {
        "uuid": new_uuid("pl"),
        "data_source_uuid": data_source_uuid,
        "name": body["name"],
        "interval_count": body["interval_count"],
        "interval_unit": body["interval_unit"],
        "external_id": external_id,
    }
    store.insert("plans", doc, uuid=doc["uuid"], data_source_uuid=data_source_uuid, external_id=external_id)
    return doc


def register(router: Router, emulator: Emulator) -> None:
    store = emulator.store

    @router.route("POST", "/v1/plans")
    def create(request: Request) -> Response:
        return json_response(201, create_plan(emulator, emulator.body_object(request)))

    @router.route("GET", "/v1/plans")
    def list_all(request: Request) -> Response:
        where = {key: request.query_one(key) for key in ("data_source_uuid", "external_id") if request.query_one(key)}
        return emulator.page(request, "plans", "plans", lambda docs: docs, where=where)

    @router.route("GET", "/v1/plans/{uuid}")
    def retrieve(request: Request) -> Response:
        return json_response(200, emulator.require("plans", PLAN_NOT_FOUND, uuid=request.params["uuid"]))

    @router.route("PATCH", "/v1/plans/{uuid}")
    def modify(request: Request) -> Response:
        doc = emulator.require("plans", PLAN_NOT_FOUND, uuid=request.params["uuid"])
        body = emulator.body_object(request)
        errors: dict[str, str] = {}
        _check_interval(body, errors, required=False)
        if errors:
            return field_errors(errors)
        for key in ("name", "interval_count", "interval_unit"):  # docs/sources.md#cm-plans: the modifiable fields
            if body.get(key) is not None:
                doc[key] = body[key]
        store.update("plans", {"uuid": doc["uuid"]}, doc)
        # docs/sources.md#cm-plans (recorded): 202 with the plan; the client returns None
        return json_response(202, doc)

    @router.route("DELETE", "/v1/plans/{uuid}")
    def delete(request: Request) -> Response:
        emulator.require("plans", PLAN_NOT_FOUND, uuid=request.params["uuid"])
        store.delete("plans", uuid=request.params["uuid"])
        return empty_response(204)
