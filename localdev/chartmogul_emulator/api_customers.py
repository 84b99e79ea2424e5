"""Customers: create, list, retrieve, update, delete, search, merge (docs/sources.md#cm-customers)."""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from localdev.chartmogul_emulator.api_sources import require_data_source
from localdev.chartmogul_emulator.core import Emulator, new_uuid
from localdev.chartmogul_emulator.responses import APIProblem, coded_error, field_errors, not_found
from localdev.chartmogul_emulator.validation import (
    SchemaError,
    expect_enum,
    expect_timestamp,
    expect_type,
    format_timestamp,
    is_blank,
)
from localdev.emulator_kit import Request, Response, Router, empty_response, json_response

CUSTOMER_NOT_FOUND = "Customer not found"
CUSTOMER_EXISTS = "The external ID for this customer already exists in our system."  # docs/sources.md#cm-summary
LEAD_STATUSES = ("New Lead", "Working Lead", "Qualified Lead", "Unqualified Lead")  # docs/sources.md#cm-customers
CUSTOM_TYPES = ("String", "Integer", "Decimal", "Timestamp", "Boolean")  # docs/sources.md#cm-customers
_STRING_FIELDS = ("external_id", "name", "email", "company", "country", "state", "city", "zip", "owner")
_STRING_FIELDS_MORE = ("website_url",)


def _check_fields(body: dict[str, Any]) -> None:
    """400 for wrong types (docs/sources.md#cm-validation); returns nothing, raises `SchemaError`."""
    for key in (*_STRING_FIELDS, *_STRING_FIELDS_MORE):
        expect_type(body, key, str, key)
    expect_timestamp(body, "lead_created_at", "lead_created_at")
    expect_timestamp(body, "free_trial_started_at", "free_trial_started_at")
    expect_enum(body, "status", LEAD_STATUSES, "status")
    expect_type(body, "primary_contact", dict, "primary_contact")
    attributes = body.get("attributes")
    if attributes is None:
        return
    if not isinstance(attributes, dict):
        raise SchemaError("attributes")
    tags = attributes.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)):
        raise SchemaError("attributes[tags]")


def _custom_from_create(custom: Any, param: str = "custom") -> dict[str, Any]:
    """docs/sources.md#cm-customers: create takes a list of `{type,key,value,source}`; answers a map keyed by attribute
    key."""
    if custom is None:
        return {}
    if not isinstance(custom, list):
        raise SchemaError(param)
    result: dict[str, Any] = {}
    for index, item in enumerate(custom):
        if not isinstance(item, dict):
            raise SchemaError(f"{param}[{index}]")
        if item.get("type") not in CUSTOM_TYPES:
            raise SchemaError(f"{param}[{index}][type]")  # docs/sources.md#cm-validation: the recorded example message
        if not isinstance(item.get("key"), str) or not item["key"]:
            raise SchemaError(f"{param}[{index}][key]")
        result[item["key"]] = item.get("value")
    return result


def declare_custom(emulator: Emulator, custom: Any) -> None:
    """Create the typed definitions of a create call's custom list (account-wide); a key keeps its first type."""
    for item in custom or []:
        existing = emulator.store.one("custom_attributes", key=item["key"])
        if existing is None:
            doc = {"key": item["key"], "type": item["type"]}
            emulator.store.insert("custom_attributes", doc, key=item["key"])
        elif existing["type"] != item["type"]:
            # [inf] not documented: one key, one type
            raise APIProblem(field_errors({"custom": f"{item['key']} is a {existing['type']} attribute"}))


def _custom_from_update(emulator: Emulator, custom: Any, param: str = "attributes[custom]") -> dict[str, Any]:
    """docs/sources.md#cm-customers: update takes `{KEY: value}` or `{KEY: {"value": .., "source": ..}}`, for created
    keys only.

    "Attribute must first be created using the POST call"
    (https://dev.chartmogul.com/reference/update-custom-attributes-of-customer); the refusal's wording is [inf].
    """
    if custom is None:
        return {}
    if not isinstance(custom, dict):
        raise SchemaError(param)
    values = {
        key: value["value"] if isinstance(value, dict) and "value" in value else value for key, value in custom.items()
    }
    undeclared = [key for key in values if not emulator.store.exists("custom_attributes", key=key)]
    if undeclared and emulator.options.undeclared_custom_attributes == "refuse":
        raise APIProblem(
            field_errors(
                {
                    "custom": f"Custom attribute {undeclared[0]} does not exist; "
                    "it must first be created using the POST call"
                }
            )
        )
    return {key: value for key, value in values.items() if key not in undeclared}


def _timestamp_or_none(body: dict[str, Any], key: str) -> str | None:
    moment = expect_timestamp(body, key, key)
    return format_timestamp(moment) if moment else None


def _apply_fields(doc: dict[str, Any], body: dict[str, Any]) -> None:
    """Copy the given fields; docs/sources.md#cm-customers: absent strings answer `""` (name/company/email are never
    null)."""
    for key in ("name", "email", "company", "city"):
        if key in body:
            doc[key] = body[key] if body[key] is not None else ""
    for key in ("country", "state", "zip", "owner", "website_url"):
        if key in body:
            doc[key] = body[key]
    for key in ("lead_created_at", "free_trial_started_at"):
        if key in body:
            doc[key] = _timestamp_or_none(body, key)
    if "primary_contact" in body:
        doc["_primary_contact"] = body["primary_contact"]
    doc["address"] = {
        "country": doc.get("country"),
        "state": doc.get("state"),
        "city": doc.get("city", ""),
        "address_zip": doc.get("zip"),
    }


def delete_customer_data(emulator: Emulator, customer_uuid: str) -> None:
    store = emulator.store
    invoice_uuids = store.column_values("invoices", "uuid", customer_uuid=customer_uuid)
    store.delete("line_items", invoice_uuid=invoice_uuids)
    store.delete("transactions", invoice_uuid=invoice_uuids)
    store.delete("invoices", customer_uuid=customer_uuid)
    store.delete("subscriptions", customer_uuid=customer_uuid)


def create_customer(emulator: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    """Store a new customer (docs/sources.md#cm-customers); raises `APIProblem`/`SchemaError` on invalid input."""
    store = emulator.store
    data_source_uuid = require_data_source(emulator, body)
    _check_fields(body)
    attributes = body.get("attributes") or {}
    custom = _custom_from_create(attributes.get("custom"))
    declare_custom(emulator, attributes.get("custom"))
    external_id = body.get("external_id")
    if is_blank(external_id):
        raise APIProblem(field_errors({"external_id": "can't be blank"}))
    if store.exists("customer_ids", data_source_uuid=data_source_uuid, external_id=external_id):
        raise APIProblem(field_errors({"external_id": CUSTOMER_EXISTS}))  # docs/sources.md#cm-customers
    customer_uuid = new_uuid("cus")
    numeric_id = uuid_module.UUID(customer_uuid[4:]).int % 900_000_000 + 100_000_000
    doc: dict[str, Any] = {
        "id": numeric_id,
        "uuid": customer_uuid,
        "external_id": external_id,
        "name": "",
        "email": "",
        "company": "",
        "city": "",
        "country": None,
        "state": None,
        "zip": None,
        "lead_created_at": None,
        "free_trial_started_at": None,
        "attributes": {"custom": custom, "clearbit": {}, "stripe": {}, "tags": list(attributes.get("tags") or [])},
        "data_source_uuid": data_source_uuid,
        "data_source_uuids": [data_source_uuid],
        "external_ids": [external_id],
        "billing-system-url": None,
        "chartmogul-url": f"https://app.chartmogul.com/#/customers/{numeric_id}",
        "billing-system-type": "Import API",
        "currency": "USD",
        "currency-sign": "$",
        "owner": None,
        "website_url": None,
        "_lead_status": body.get("status") or "New Lead",
    }
    _apply_fields(doc, body)
    store.insert(
        "customers",
        doc,
        uuid=customer_uuid,
        data_source_uuid=data_source_uuid,
        external_id=external_id,
        email=doc["email"],
    )
    store.insert(
        "customer_ids", data_source_uuid=data_source_uuid, external_id=external_id, customer_uuid=customer_uuid
    )
    return doc


def register(router: Router, emulator: Emulator) -> None:
    store = emulator.store

    def find(reference: Any, side: str) -> dict[str, Any]:
        """A merge side: `{"customer_uuid": ..}` or `{"data_source_uuid": .., "external_id": ..}`."""
        if not isinstance(reference, dict):
            raise APIProblem(coded_error(400, f'Parameter "{side}" does not have a valid value', side))
        if reference.get("customer_uuid"):
            found = store.one("customers", uuid=reference["customer_uuid"])
        else:
            found = emulator.customer_by_external_id(
                str(reference.get("data_source_uuid")), str(reference.get("external_id"))
            )
        if found is None:
            raise APIProblem(not_found(CUSTOMER_NOT_FOUND))
        return found

    @router.route("POST", "/v1/customers")
    def create(request: Request) -> Response:
        doc = create_customer(emulator, emulator.body_object(request))
        return json_response(201, emulator.render_customer(doc))

    @router.route("GET", "/v1/customers")
    def list_all(request: Request) -> Response:
        where: dict[str, Any] = {}
        data_source_uuid, external_id = request.query_one("data_source_uuid"), request.query_one("external_id")
        if external_id:
            owners = store.column_values(
                "customer_ids",
                "customer_uuid",
                external_id=external_id,
                **({"data_source_uuid": data_source_uuid} if data_source_uuid else {}),
            )
            where["uuid"] = owners
        elif data_source_uuid:
            where["data_source_uuid"] = data_source_uuid
        status = request.query_one("status")
        if status:
            wanted = status.replace("_", " ")
            candidates = store.docs("customers", **where)
            where["uuid"] = [c["uuid"] for c in emulator.render_customers(candidates) if c["status"] == wanted]
        # docs/sources.md#cm-pagination: only entries/has_more/cursor at the top level (the client's namedtuple)
        return emulator.page(request, "customers", "entries", emulator.render_customers, where=where)

    @router.route("GET", "/v1/customers/search")
    def search(request: Request) -> Response:
        email = request.query_one("email") or ""
        if not store.exists("customers", email=email) or not email:
            # docs/sources.md#cm-customers (recorded)
            return coded_error(404, f'Can\'t find any customers with email: "{email}"', "email")
        return emulator.page(request, "customers", "entries", emulator.render_customers, where={"email": email})

    @router.route("POST", "/v1/customers/merges")
    def merge(request: Request) -> Response:
        body = emulator.body_object(request)
        source, target = find(body.get("from"), "from"), find(body.get("into"), "into")
        if source["uuid"] == target["uuid"]:
            return field_errors({"from": "can't be merged into itself"})
        store.update("invoices", {"customer_uuid": source["uuid"]}, customer_uuid=target["uuid"])
        for invoice in store.docs("invoices", customer_uuid=target["uuid"]):
            invoice["customer_uuid"] = target["uuid"]
            store.update("invoices", {"uuid": invoice["uuid"]}, invoice)
        for subscription in store.docs("subscriptions", customer_uuid=source["uuid"]):
            subscription["customer_uuid"] = target["uuid"]
            store.update("subscriptions", {"uuid": subscription["uuid"]}, subscription, customer_uuid=target["uuid"])
        store.update("customer_ids", {"customer_uuid": source["uuid"]}, customer_uuid=target["uuid"])
        target["external_ids"] = list(dict.fromkeys(target["external_ids"] + source["external_ids"]))
        target["data_source_uuids"] = list(dict.fromkeys(target["data_source_uuids"] + source["data_source_uuids"]))
        store.update("customers", {"uuid": target["uuid"]}, target)
        store.delete("customers", uuid=source["uuid"])
        return json_response(202, {})  # docs/sources.md#cm-customers (recorded): 202 `{}`, the client returns None

    @router.route("GET", "/v1/customers/{uuid}")
    def retrieve(request: Request) -> Response:
        doc = emulator.require("customers", CUSTOMER_NOT_FOUND, uuid=request.params["uuid"])
        return json_response(200, emulator.render_customer(doc))

    def update(request: Request) -> Response:
        doc = emulator.require("customers", CUSTOMER_NOT_FOUND, uuid=request.params["uuid"])
        body = emulator.body_object(request)
        _check_fields({key: value for key, value in body.items() if key != "external_id"})
        _apply_fields(doc, body)
        attributes = body.get("attributes")
        if isinstance(attributes, dict):
            if "tags" in attributes:
                doc["attributes"]["tags"] = list(attributes["tags"] or [])
            doc["attributes"]["custom"].update(_custom_from_update(emulator, attributes.get("custom")))
        store.update("customers", {"uuid": doc["uuid"]}, doc, email=doc["email"])
        # docs/sources.md#cm-customers (recorded): 200, full customer
        return json_response(200, emulator.render_customer(doc))

    @router.route("GET", "/v1/customers/{uuid}/attributes")
    def attributes(request: Request) -> Response:
        doc = emulator.require("customers", CUSTOMER_NOT_FOUND, uuid=request.params["uuid"])
        return json_response(200, doc["attributes"])  # docs/sources.md#cm-customers (recorded)

    @router.route("POST", "/v1/customers/{uuid}/attributes/custom")
    def add_custom(request: Request) -> Response:
        """https://dev.chartmogul.com/reference/add-custom-attributes-to-customer: creates (typed) and sets."""
        doc = emulator.require("customers", CUSTOMER_NOT_FOUND, uuid=request.params["uuid"])
        custom = emulator.body_object(request).get("custom")
        values = _custom_from_create(custom)
        declare_custom(emulator, custom)
        doc["attributes"]["custom"].update(values)
        store.update("customers", {"uuid": doc["uuid"]}, doc)
        return json_response(200, {"custom": doc["attributes"]["custom"]})  # recorded: 200, every attribute

    @router.route("PUT", "/v1/customers/{uuid}/attributes/custom")
    def update_custom(request: Request) -> Response:
        """https://dev.chartmogul.com/reference/update-custom-attributes-of-customer: created keys only."""
        doc = emulator.require("customers", CUSTOMER_NOT_FOUND, uuid=request.params["uuid"])
        values = _custom_from_update(emulator, emulator.body_object(request).get("custom"), "custom")
        doc["attributes"]["custom"].update(values)
        store.update("customers", {"uuid": doc["uuid"]}, doc)
        return json_response(200, {"custom": doc["attributes"]["custom"]})

    router.add("PATCH", "/v1/customers/{uuid}", update)
    router.add("PUT", "/v1/customers/{uuid}", update)  # the legacy `Customer.update`

    @router.route("DELETE", "/v1/customers/{uuid}")
    def delete(request: Request) -> Response:
        emulator.require("customers", CUSTOMER_NOT_FOUND, uuid=request.params["uuid"])
        delete_customer_data(emulator, request.params["uuid"])
        store.delete("customer_ids", customer_uuid=request.params["uuid"])
        store.delete("customers", uuid=request.params["uuid"])
        return empty_response(204)  # docs/sources.md#cm-customers (recorded)
