"""Ping and data sources (docs/sources.md#cm-transport, #cm-data-sources)."""

from __future__ import annotations

from typing import Any

from localdev.chartmogul_emulator.core import Emulator, new_uuid
from localdev.chartmogul_emulator.responses import APIProblem, field_errors
from localdev.chartmogul_emulator.validation import expect_type, format_timestamp, is_blank
from localdev.emulator_kit import Request, Response, Router, empty_response, json_response

DATA_SOURCE_NOT_FOUND = "Data source not found"  # docs/sources.md#cm-data-sources (recorded)

# docs/sources.md#cm-data-sources: the optional blocks' default content when their flag is true.
_INVOICE_HANDLING = {
    "create_subscription_when_invoice_is": "open",
    "update_subscription_when_invoice_is": "open",
    "prevent_subscription_for_invoice_voided": True,
    "prevent_subscription_for_invoice_refunded": False,
    "prevent_subscription_for_invoice_written_off": True,
}


def purge_data_source(emulator: Emulator, data_source_uuid: str) -> None:
    """Everything imported into a data source (the source itself stays)."""
    for table in ("customer_ids", "customers", "plans", "invoices", "line_items", "transactions"):
        emulator.store.delete(table, data_source_uuid=data_source_uuid)
    emulator.store.delete("subscriptions", data_source_uuid=data_source_uuid)
    emulator.store.delete("subscription_events", data_source_uuid=data_source_uuid)


def register(router: Router, emulator: Emulator) -> None:
    store = emulator.store

    def render(request: Request, doc: dict[str, Any]) -> dict[str, Any]:
        """docs/sources.md#cm-data-sources: the optional blocks appear only when their flag is `true`."""
        rendered = {key: value for key, value in doc.items() if not key.startswith("_")}
        if request.query_one("with_processing_status") == "true":
            pending = store.count("json_imports", data_source_uuid=doc["uuid"], status=["queued", "processing"])
            processed = store.count("invoices", data_source_uuid=doc["uuid"])
            rendered["processing_status"] = {"processed": processed, "failed": 0, "pending": pending}
        if request.query_one("with_auto_churn_subscription_setting") == "true":
            rendered["auto_churn_subscription_setting"] = doc.get("_auto_churn") or {"enabled": False, "interval": None}
        if request.query_one("with_invoice_handling_setting") == "true":
            rendered["invoice_handling_setting"] = {"manual": _INVOICE_HANDLING, "automatic": _INVOICE_HANDLING}
        return rendered

    @router.route("GET", "/v1/ping")
    def ping(request: Request) -> Response:
        return json_response(200, {"data": "pong!"})  # docs/sources.md#cm-transport

    @router.route("POST", "/v1/data_sources")
    def create(request: Request) -> Response:
        body = emulator.body_object(request)
        expect_type(body, "name", str, "name")
        name = body.get("name")
        if is_blank(name):
            # docs/sources.md#cm-data-sources (recorded)
            return field_errors({"name": "A name is required for each data source."})
        if store.exists("data_sources", name=name):
            return field_errors({"name": "Has already been taken."})  # docs/sources.md#cm-data-sources
        doc = {
            "uuid": new_uuid("ds"),
            "name": name,
            "system": "Import API",  # docs/sources.md#cm-data-sources: recorded responses say "Import API"
            "created_at": format_timestamp(emulator.now()),
            "status": "idle",
            # The setting the new source reports (EmulatorOptions.auto_churn_*, default as recorded in 2025).
            "_auto_churn": {
                "enabled": emulator.options.auto_churn_enabled,
                "interval": emulator.options.auto_churn_interval_days if emulator.options.auto_churn_enabled else None,
            },
        }
        store.insert("data_sources", doc, uuid=doc["uuid"], name=name)
        return json_response(201, {key: value for key, value in doc.items() if not key.startswith("_")})

    @router.route("GET", "/v1/data_sources")
    def list_all(request: Request) -> Response:
        where: dict[str, Any] = {}
        if request.query_one("name"):
            where["name"] = request.query_one("name")
        docs = store.docs("data_sources", **where)
        system = request.query_one("system")
        if system:
            docs = [doc for doc in docs if doc["system"] == system]
        # docs/sources.md#cm-pagination: not paginated, and `has_more`/`cursor` here would break the client's
        # namedtuple.
        return json_response(200, {"data_sources": [render(request, doc) for doc in docs]})

    @router.route("GET", "/v1/data_sources/{uuid}")
    def retrieve(request: Request) -> Response:
        doc = emulator.require("data_sources", DATA_SOURCE_NOT_FOUND, uuid=request.params["uuid"])
        return json_response(200, render(request, doc))

    @router.route("DELETE", "/v1/data_sources/{uuid}")
    def delete(request: Request) -> Response:
        emulator.require("data_sources", DATA_SOURCE_NOT_FOUND, uuid=request.params["uuid"])
        purge_data_source(emulator, request.params["uuid"])
        store.delete("json_imports", data_source_uuid=request.params["uuid"])
        store.delete("json_import_payloads", data_source_uuid=request.params["uuid"])
        store.delete("data_sources", uuid=request.params["uuid"])
        return empty_response(204)  # docs/sources.md#cm-data-sources (recorded)

    @router.route("DELETE", "/v1/data_sources/{uuid}/all")
    def empty(request: Request) -> Response:
        emulator.require("data_sources", DATA_SOURCE_NOT_FOUND, uuid=request.params["uuid"])
        purge_data_source(emulator, request.params["uuid"])
        return empty_response(204)  # docs/sources.md#cm-data-sources (recorded, Go client)


def require_data_source(emulator: Emulator, body: dict[str, Any]) -> str:
    """The body's `data_source_uuid`, which must name an existing source; else 422 (inferred shape)."""
    expect_type(body, "data_source_uuid", str, "data_source_uuid")
    data_source_uuid = body.get("data_source_uuid")
    if is_blank(data_source_uuid):
        raise APIProblem(field_errors({"data_source_uuid": "can't be blank"}))
    assert isinstance(data_source_uuid, str)
    if not emulator.store.exists("data_sources", uuid=data_source_uuid):
        raise APIProblem(field_errors({"data_source_uuid": DATA_SOURCE_NOT_FOUND}))
    return data_source_uuid
