"""Bulk JSON import: `POST /data_sources/{uuid}/json_imports` and its status (docs/sources.md#cm-bulk-import).

The POST only queues the payload (validation is asynchronous, docs/sources.md#cm-validation); a background worker moves
each import queued → processing → completed after the configured delays, applying it customer by customer.
Each customer's objects are all-or-nothing [inf], in a transaction of their own: one invalid record fails that
customer, and `status_details[<customer external id>]` says `failed` with the errors; the import itself still
`completed`. Plans go first and are shared; an existing customer or plan (same external id) is reused.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid as uuid_module
from typing import Any

from localdev.chartmogul_emulator.api_customers import create_customer
from localdev.chartmogul_emulator.api_events import create_event
from localdev.chartmogul_emulator.api_invoices import InvoiceCheck, InvoiceWriter
from localdev.chartmogul_emulator.api_plans import create_plan
from localdev.chartmogul_emulator.core import Emulator
from localdev.chartmogul_emulator.responses import APIProblem, coded_error
from localdev.chartmogul_emulator.validation import SchemaError, format_event_timestamp
from localdev.emulator_kit import Request, Response, Router, json_response

logger = logging.getLogger(__name__)

IMPORT_NOT_FOUND = "Import not found"
SECTIONS = ("customers", "plans", "invoices", "line_items", "transactions", "subscription_events")
OBJECT_TYPES = ("customers", "invoices", "line_items", "transactions", "subscription_events")


class CustomerFailed(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _problem_text(problem: APIProblem | SchemaError) -> str:
    if isinstance(problem, SchemaError):
        return problem.message
    return problem.response.body.decode(errors="replace")


def _render(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if not key.startswith("_")}


class BulkImporter:
    """Applies one import payload; every failure is recorded in `status_details`, nothing raises."""

    def __init__(self, emulator: Emulator, data_source_uuid: str, payload: dict[str, Any]) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self.data_source_uuid = data_source_uuid
        self.payload = payload
        self.details: dict[str, Any] = {}

    def by_key(self, section: str, key: str) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in self.payload.get(section) or []:
            grouped.setdefault(str(item.get(key)), []).append(item)
        return grouped

    def run(self) -> dict[str, Any]:
        plan_uuids = self.import_plans()
        customers = {str(c.get("external_id")): c for c in self.payload.get("customers") or []}
        invoices = self.by_key("invoices", "customer_external_id")
        events = self.by_key("subscription_events", "customer_external_id")
        line_items = self.by_key("line_items", "invoice_external_id")
        transactions = self.by_key("transactions", "invoice_external_id")
        for external_id in dict.fromkeys([*customers, *invoices, *events]):
            try:
                with self.store.transaction():  # one customer's records all-or-nothing, the lock released after
                    counts = self.import_customer(
                        external_id,
                        customers.get(external_id),
                        invoices.get(external_id, []),
                        events.get(external_id, []),
                        line_items,
                        transactions,
                        plan_uuids,
                    )
                self.details[external_id] = {"status": "imported", **counts}
            except CustomerFailed as failure:
                self.details[external_id] = {"status": "failed", "errors": failure.errors}
        return self.details

    def import_plans(self) -> dict[str, str]:
        """Plans by external id → uuid (existing ones included); failures land in `details["plans"]`."""
        with self.store.transaction():
            return self._import_plans()

    def _import_plans(self) -> dict[str, str]:
        errors: list[str] = []
        for plan in self.payload.get("plans") or []:
            external_id = plan.get("external_id")
            if external_id and self.store.exists(
                "plans", data_source_uuid=self.data_source_uuid, external_id=external_id
            ):
                continue
            try:
                with self.store.savepoint():
                    create_plan(self.emulator, {**plan, "data_source_uuid": self.data_source_uuid})
            except (APIProblem, SchemaError) as problem:
                errors.append(f"plan {external_id}: {_problem_text(problem)}")
        if self.payload.get("plans"):
            self.details["plans"] = {"status": "failed", "errors": errors} if errors else {"status": "imported"}
        return {
            plan["external_id"]: plan["uuid"]
            for plan in self.store.docs("plans", data_source_uuid=self.data_source_uuid)
        }

    def import_customer(
        self,
        external_id: str,
        customer_body: dict[str, Any] | None,
        invoices: list[dict[str, Any]],
        events: list[dict[str, Any]],
        line_items: dict[str, list[dict[str, Any]]],
        transactions: dict[str, list[dict[str, Any]]],
        plan_uuids: dict[str, str],
    ) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        customer = self.emulator.customer_by_external_id(self.data_source_uuid, external_id)
        if customer is None:
            if customer_body is None:
                raise CustomerFailed([f"customer {external_id}: not found and not in the import"])
            try:
                customer = create_customer(self.emulator, {**customer_body, "data_source_uuid": self.data_source_uuid})
            except (APIProblem, SchemaError) as problem:
                raise CustomerFailed([f"customer {external_id}: {_problem_text(problem)}"]) from None
        counts["customers"] = {"status": "imported"}
        check = InvoiceCheck(self.emulator, self.data_source_uuid)
        writer = InvoiceWriter(self.emulator, customer)
        errors: list[str] = []
        for index, flat in enumerate(invoices):
            invoice = {key: value for key, value in flat.items() if key != "customer_external_id"}
            invoice["line_items"] = [
                self._line_item(item, plan_uuids) for item in line_items.get(str(flat.get("external_id")), [])
            ]
            invoice["transactions"] = [
                {key: value for key, value in tx.items() if key != "invoice_external_id"}
                for tx in transactions.get(str(flat.get("external_id")), [])
            ]
            try:
                check.check_schema(invoice, f"invoices[{index}]")
            except SchemaError as exc:
                errors.append(f"invoice {flat.get('external_id')}: {exc.message}")
                continue
            invoice_errors = check.check_semantics(invoice)
            if invoice_errors:
                errors.append(f"invoice {flat.get('external_id')}: {json.dumps(invoice_errors)}")
                continue
            # What the per-object API would store with `errors` fails the customer here: how a bulk import
            # reports an object stored invalid is not documented [inf]; the customer's records stay all-or-nothing.
            own, lines, transactions_errors = check.stored_errors(invoice)
            invalid = [("invoice", flat.get("external_id"), own)]
            invalid += [
                ("line item", li.get("external_id"), e) for li, e in zip(invoice["line_items"], lines, strict=True)
            ]
            invalid += [
                ("transaction", tx.get("external_id"), e)
                for tx, e in zip(invoice["transactions"], transactions_errors, strict=True)
            ]
            found = [f"{kind} {object_id}: {json.dumps(e)}" for kind, object_id, e in invalid if e]
            if found:
                errors += found
                continue
            writer.write(invoice)
        for event in events:
            try:
                create_event(self.emulator, {**event, "data_source_uuid": self.data_source_uuid})
            except (APIProblem, SchemaError) as problem:
                errors.append(f"subscription event {event.get('external_id')}: {_problem_text(problem)}")
        if errors:
            raise CustomerFailed(errors)
        for object_type in OBJECT_TYPES[1:]:
            counts[object_type] = {"status": "imported"}
        return counts

    @staticmethod
    def _line_item(item: dict[str, Any], plan_uuids: dict[str, str]) -> dict[str, Any]:
        """docs/sources.md#cm-bulk-import: bulk line items name plans by `plan_external_id`, not `plan_uuid`."""
        converted = {
            key: value for key, value in item.items() if key not in ("invoice_external_id", "plan_external_id")
        }
        if item.get("plan_external_id") is not None:
            converted["plan_uuid"] = plan_uuids.get(
                str(item["plan_external_id"]), f"unknown:{item['plan_external_id']}"
            )
        return converted


class BulkWorker:
    """Moves imports through queued → processing → completed in a daemon thread."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="chartmogul-bulk-import", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.step()
            except Exception:  # keep the worker alive; the import stays where it was
                logger.exception("bulk import step failed")

    def step(self) -> None:
        """Advance every import whose current stage has lasted long enough (also callable directly)."""
        options = self.emulator.options
        store = self.emulator.store
        now = dt.datetime.now(dt.UTC)
        for _, doc in store.rows("json_imports", status=["queued", "processing"]):
            entered = dt.datetime.fromisoformat(doc["_stage_entered"])
            if doc["status"] == "queued" and now - entered >= dt.timedelta(seconds=options.bulk_queued_seconds):
                # Processing is asynchronous and gradual, as ChartMogul's (docs/sources.md#cm-bulk-import): the import
                # is `processing` while its customers are applied one transaction each, so the API's other requests
                # are served in between instead of waiting for the whole import.
                payload = store.one("json_import_payloads", uuid=doc["id"]) or {}
                store.delete("json_import_payloads", uuid=doc["id"])
                self._advance(doc, "processing", now)
                doc["status_details"] = BulkImporter(self.emulator, doc["data_source_uuid"], payload).run()
                store.update("json_imports", {"uuid": doc["id"]}, doc, status=doc["status"])
            elif doc["status"] == "processing" and now - entered >= dt.timedelta(
                seconds=options.bulk_processing_seconds
            ):
                self._advance(doc, "completed", now)

    def _advance(self, doc: dict[str, Any], status: str, now: dt.datetime) -> None:
        doc["status"] = status
        doc["_stage_entered"] = now.isoformat()
        doc["updated_at"] = format_event_timestamp(self.emulator.now())
        self.emulator.store.update("json_imports", {"uuid": doc["id"]}, doc, status=status)


def register(router: Router, emulator: Emulator) -> None:
    store = emulator.store

    @router.route("POST", "/v1/data_sources/{uuid}/json_imports")
    def create(request: Request) -> Response:
        data_source_uuid = request.params["uuid"]
        emulator.require("data_sources", "Data source not found", uuid=data_source_uuid)
        if len(request.body) > emulator.options.bulk_max_bytes:
            # docs/sources.md#cm-bulk-import: JSON payload ≤ 5 MB; the exact answer is not documented [inf]
            return coded_error(413, "The JSON payload exceeds the 5 MB limit", None)
        body = emulator.body_object(request)
        for section in SECTIONS:
            items = body.get(section)
            if items is not None and not (isinstance(items, list) and all(isinstance(i, dict) for i in items)):
                raise SchemaError(section)
        if body.get("external_id") is not None and not isinstance(body["external_id"], str):
            raise SchemaError("external_id")
        now = format_event_timestamp(emulator.now())
        doc: dict[str, Any] = {
            "id": str(uuid_module.uuid4()),  # docs/sources.md#cm-bulk-import: a string (the client's schema)
            "data_source_uuid": data_source_uuid,
            "status": "queued",
            "external_id": body.get("external_id"),
            "status_details": {},
            "created_at": now,
            "updated_at": now,
            "_stage_entered": dt.datetime.now(dt.UTC).isoformat(),
        }
        store.insert(
            "json_imports",
            doc,
            uuid=doc["id"],
            data_source_uuid=data_source_uuid,
            external_id=doc["external_id"],
            status="queued",
        )
        # The records apart from the status document: the worker's look at unfinished imports (every 50 ms) and
        # every status poll read only the small document, never the payload of up to 5 MB.
        payload = {section: body.get(section) or [] for section in SECTIONS}
        store.insert("json_import_payloads", payload, uuid=doc["id"], data_source_uuid=data_source_uuid)
        return json_response(201, _render(doc))  # [inf] 201 with a body (a 202 would make the client return None)

    @router.route("GET", "/v1/data_sources/{uuid}/json_imports/{id}")
    def retrieve(request: Request) -> Response:
        # The path parameter is the `external_id` the caller chose, nothing else: the docs define it so
        # (https://dev.chartmogul.com/reference/bulk-import/track-status, "a unique identifier specified by you")
        # and both doc examples and the Node SDK's test poll with it (chartmogul/chartmogul-node
        # test/chartmogul/json-import.js, `importId = 'ds_import_1'`). The returned `id` is not promised to work.
        data_source_uuid, import_id = request.params["uuid"], request.params["id"]
        doc = store.one("json_imports", data_source_uuid=data_source_uuid, external_id=import_id)
        if doc is None:
            raise APIProblem(coded_error(404, IMPORT_NOT_FOUND, "id"))
        return json_response(200, _render(doc))
