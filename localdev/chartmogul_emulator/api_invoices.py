"""Invoices with line items and transactions, transactions on an existing invoice, and the subscriptions
derived from subscription line items, with their cancellation (docs/sources.md#cm-invoices, #cm-subscriptions,
#cm-validation)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from localdev.chartmogul_emulator.core import Emulator, new_uuid
from localdev.chartmogul_emulator.responses import APIProblem, field_errors
from localdev.chartmogul_emulator.validation import (
    ISO_CURRENCIES,
    SchemaError,
    expect_enum,
    expect_object,
    expect_timestamp,
    expect_type,
    format_timestamp,
    is_blank,
    parse_timestamp,
)
from localdev.emulator_kit import Request, Response, Router, empty_response, json_response

INVOICE_NOT_FOUND = "Invoice not found"
SUBSCRIPTION_NOT_FOUND = "Subscription not found"
# docs/sources.md#cm-summary / #cm-validation: the duplicate messages (from ChartMogul's Go client constants).
INVOICE_EXISTS = "The external ID for this invoice already exists in our system."
LINE_ITEM_EXISTS = "The external ID for this line item already exists in our system."
TRANSACTION_EXISTS = "has already been taken"
BLANK = "can't be blank"  # [inf] the Rails wording of ChartMogul's newer 422s (docs/sources.md#cm-errors)

# Objects ChartMogul stores (201) but marks invalid with an `errors` map, excluded from metrics. The cases and
# their words are the SDK maintainers' test bodies since chartmogul-python 4.9 / chartmogul-node: an invoice dated
# in the future and an invalid currency (chartmogul/chartmogul-python test/api/test_invoice.py, chartmogul-node
# test/chartmogul/invoice.js: `"currency": ["Currency is invalid", "Currency must be supported"]`,
# `"date": ["Date is in the future"]`), a negative line amount and a future transaction (test_invoice.py
# InvoiceErrorsTestCase: `"amount_in_cents": ["must be positive"]`, `"date": ["is in the future"]`), and a missing
# plan (chartmogul-node test/chartmogul/invoice.js `'Plan not found'`; chartmogul-python PR #133: "I was able to
# get a plan missing error in line item").
INVALID_CURRENCY = ["Currency is invalid", "Currency must be supported"]
DATE_IN_FUTURE = ["Date is in the future"]
AMOUNT_NOT_POSITIVE = ["must be positive"]
PLAN_NOT_FOUND = ["Plan not found"]
TRANSACTION_IN_FUTURE = ["is in the future"]

LINE_ITEM_TYPES = ("subscription", "one_time", "trial")  # docs/sources.md#cm-invoice-import
PRORATION_TYPES = ("differential", "differential_mrr", "full")  # docs/sources.md#cm-invoice-import
TRANSACTION_TYPES = ("payment", "refund")
TRANSACTION_RESULTS = ("successful", "failed")
COLLECTION_METHODS = ("automatic", "manual")

# "Invoice not found" for an unknown customer is ChartMogul's own (misleading) answer (docs/sources.md#cm-validation).
UNKNOWN_CUSTOMER_BODY = {
    "error": INVOICE_NOT_FOUND,
    "error_details": [{"param": "invoice", "code": "invalid", "message": INVOICE_NOT_FOUND}],
}


# ---- validation -------------------------------------------------------------------------------------


class InvoiceCheck:
    """Validates the invoices of one request; duplicates count against the store and earlier invoices."""

    def __init__(self, emulator: Emulator, data_source_uuid: str) -> None:
        self.emulator = emulator
        self.data_source_uuid = data_source_uuid
        self.seen: dict[str, set[str]] = {"invoices": set(), "line_items": set(), "transactions": set()}

    def _taken(self, table: str, external_id: Any) -> bool:
        if not isinstance(external_id, str) or not external_id:
            return False
        if external_id in self.seen[table]:
            return True
        self.seen[table].add(external_id)
        return self.emulator.store.exists(table, data_source_uuid=self.data_source_uuid, external_id=external_id)

    def check_schema(self, invoice: Any, param: str) -> None:
        """400s: types, enumerations, date forms (docs/sources.md#cm-validation). Raises `SchemaError`."""
        invoice = expect_object(invoice, param)
        for key in ("external_id", "currency", "customer_external_id", "data_source_uuid"):
            expect_type(invoice, key, str, f"{param}[{key}]")
        expect_timestamp(invoice, "date", f"{param}[date]")
        expect_timestamp(invoice, "due_date", f"{param}[due_date]")
        expect_enum(invoice, "collection_method", COLLECTION_METHODS, f"{param}[collection_method]")
        expect_type(invoice, "line_items", list, f"{param}[line_items]")
        expect_type(invoice, "transactions", list, f"{param}[transactions]")
        for index, item in enumerate(invoice.get("line_items") or []):
            self.check_line_item_schema(item, f"{param}[line_items][{index}]")
        for index, transaction in enumerate(invoice.get("transactions") or []):
            check_transaction_schema(transaction, f"{param}[transactions][{index}]")

    @staticmethod
    def check_line_item_schema(item: Any, param: str) -> None:
        item = expect_object(item, param)
        expect_enum(item, "type", LINE_ITEM_TYPES, f"{param}[type]")
        for key in (
            "amount_in_cents",
            "quantity",
            "discount_amount_in_cents",
            "tax_amount_in_cents",
            "transaction_fees_in_cents",
            "event_order",
        ):
            expect_type(item, key, int, f"{param}[{key}]")
        for key in (
            "external_id",
            "subscription_external_id",
            "subscription_set_external_id",
            "plan_uuid",
            "discount_code",
            "discount_description",
            "transaction_fees_currency",
            "account_code",
            "description",
        ):
            expect_type(item, key, str, f"{param}[{key}]")
        expect_type(item, "prorated", bool, f"{param}[prorated]")
        expect_enum(item, "proration_type", PRORATION_TYPES, f"{param}[proration_type]")
        for key in ("service_period_start", "service_period_end", "cancelled_at"):
            expect_timestamp(item, key, f"{param}[{key}]")

    def check_semantics(self, invoice: dict[str, Any]) -> dict[str, str]:
        """422s, keyed as ChartMogul does: `external_id`, `line_items.external_id`, ...
        (docs/sources.md#cm-validation)."""
        errors: dict[str, str] = {}

        def add(key: str, message: str) -> None:
            errors.setdefault(key, message)

        for key in ("external_id", "date", "currency"):
            if is_blank(invoice.get(key)):
                add(key, BLANK)
        currency = invoice.get("currency")
        if isinstance(currency, str) and currency and currency.upper() not in ISO_CURRENCIES:
            pass  # stored with `errors` (stored_errors below), not refused
        elif isinstance(currency, str) and currency and currency.upper() not in self.emulator.options.rates:
            # An emulator limit, not ChartMogul's: MRR needs a rate, and a silent 0 would hide the line.
            add("currency", f"the emulator has no exchange rate for {currency.upper()}; start it with --rates")
        if self._taken("invoices", invoice.get("external_id")):
            add("external_id", INVOICE_EXISTS)
        line_items = invoice.get("line_items") or []
        if not line_items:
            add("line_items", BLANK)
        for item in line_items:
            for key, message in self.line_item_errors(item).items():
                add(f"line_items.{key}", message)
        for transaction in invoice.get("transactions") or []:
            for key, message in self.transaction_errors(transaction).items():
                add(f"transactions.{key}", message)
        return errors

    def line_item_errors(self, item: dict[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        if is_blank(item.get("type")):
            errors["type"] = BLANK
        if item.get("amount_in_cents") is None:
            errors["amount_in_cents"] = BLANK
        if item.get("quantity") == 0:
            # docs/sources.md#cm-invoice-import: "any non-zero integer"
            errors["quantity"] = "must be a non-zero integer"
        fees_currency = item.get("transaction_fees_currency")
        if fees_currency and fees_currency.upper() not in ISO_CURRENCIES:
            errors["transaction_fees_currency"] = "is not a valid ISO 4217 currency code"
        if item.get("type") in ("subscription", "trial"):
            for key in ("subscription_external_id", "plan_uuid", "service_period_start", "service_period_end"):
                if is_blank(item.get(key)):
                    errors.setdefault(key, BLANK)  # docs/sources.md#cm-invoice-import; plan_uuid: chartmogul-node#9
            start, end = (
                parse_timestamp(item.get("service_period_start")),
                parse_timestamp(item.get("service_period_end")),
            )
            if start and end and start >= end:
                errors["service_period_end"] = "must be after the service period start"  # [inf] message
        if self._taken("line_items", item.get("external_id")):
            errors["external_id"] = LINE_ITEM_EXISTS
        return errors

    def stored_errors(
        self, invoice: dict[str, Any]
    ) -> tuple[dict[str, list[str]], list[dict[str, list[str]]], list[dict[str, list[str]]]]:
        """The `errors` maps of an invoice ChartMogul stores but marks invalid: (invoice, per line, per transaction).

        Only the documented cases (constants above); everything else is valid or refused with a 422.
        """
        now = self.emulator.now()
        invoice_errors: dict[str, list[str]] = {}
        currency = invoice.get("currency")
        if isinstance(currency, str) and currency and currency.upper() not in ISO_CURRENCIES:
            invoice_errors["currency"] = list(INVALID_CURRENCY)
        date = parse_timestamp(invoice.get("date"))
        if date is not None and date > now:
            invoice_errors["date"] = list(DATE_IN_FUTURE)
        line_errors: list[dict[str, list[str]]] = []
        for item in invoice.get("line_items") or []:
            errors: dict[str, list[str]] = {}
            if item.get("type") in ("subscription", "trial"):
                plan_uuid = item.get("plan_uuid")
                if plan_uuid and not self.emulator.store.exists(
                    "plans", uuid=plan_uuid, data_source_uuid=self.data_source_uuid
                ):
                    errors["plan_uuid"] = list(PLAN_NOT_FOUND)
                amount = item.get("amount_in_cents")
                if not item.get("prorated") and isinstance(amount, int) and amount < 0:
                    errors["amount_in_cents"] = list(AMOUNT_NOT_POSITIVE)
            line_errors.append(errors)
        transaction_errors = []
        for transaction in invoice.get("transactions") or []:
            moment = parse_timestamp(transaction.get("date"))
            transaction_errors.append({"date": list(TRANSACTION_IN_FUTURE)} if moment and moment > now else {})
        return invoice_errors, line_errors, transaction_errors

    def transaction_errors(self, transaction: dict[str, Any]) -> dict[str, str]:
        errors = {key: BLANK for key in ("type", "result", "date") if is_blank(transaction.get(key))}
        if self._taken("transactions", transaction.get("external_id")):
            errors["external_id"] = TRANSACTION_EXISTS
        return errors


def check_transaction_schema(transaction: Any, param: str) -> None:
    transaction = expect_object(transaction, param)
    expect_enum(transaction, "type", TRANSACTION_TYPES, f"{param}[type]")
    expect_enum(transaction, "result", TRANSACTION_RESULTS, f"{param}[result]")
    expect_timestamp(transaction, "date", f"{param}[date]")
    expect_type(transaction, "external_id", str, f"{param}[external_id]")
    expect_type(transaction, "amount_in_cents", int, f"{param}[amount_in_cents]")
    expect_type(transaction, "transaction_fees_in_cents", int, f"{param}[transaction_fees_in_cents]")
    expect_type(transaction, "transaction_fees_currency", str, f"{param}[transaction_fees_currency]")


# ---- storing and rendering ---------------------------------------------------------------------------


def _timestamp(value: Any) -> str | None:
    moment = parse_timestamp(value)
    return format_timestamp(moment) if moment else None


def transaction_doc(
    invoice_uuid: str, data_source_uuid: str, body: dict[str, Any], errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    # docs/sources.md#cm-invoice-import (recorded): absent amount/fees answer null, which the client's schema allows.
    doc = {
        "uuid": new_uuid("tr"),
        "external_id": body.get("external_id"),
        "type": body["type"],
        "date": _timestamp(body["date"]),
        "result": body["result"],
        "amount_in_cents": body.get("amount_in_cents"),
        "transaction_fees_in_cents": body.get("transaction_fees_in_cents"),
        "transaction_fees_currency": body.get("transaction_fees_currency"),
        "_invoice_uuid": invoice_uuid,
        "_data_source_uuid": data_source_uuid,
    }
    if errors:
        doc["errors"] = errors  # stored but invalid (InvoiceCheck.stored_errors)
    return doc


class InvoiceWriter:
    def __init__(self, emulator: Emulator, customer: dict[str, Any]) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self.customer = customer
        self.data_source_uuid: str = customer["data_source_uuid"]

    def subscription_for(self, item: dict[str, Any]) -> dict[str, Any]:
        """docs/sources.md#cm-invoice-import, #cm-subscriptions: subscriptions are derived from subscription line
        items."""
        external_id = item["subscription_external_id"]
        key = {
            "data_source_uuid": self.data_source_uuid,
            "customer_uuid": self.customer["uuid"],
            "external_id": external_id,
        }
        subscription = self.store.one("subscriptions", **key)
        if subscription is None:
            subscription = {
                "uuid": new_uuid("sub"),
                "external_id": external_id,
                "subscription_set_external_id": item.get("subscription_set_external_id"),
                "cancellation_dates": [],
                "plan_uuid": item["plan_uuid"],
                "data_source_uuid": self.data_source_uuid,
                "customer_uuid": self.customer["uuid"],
                "_latest_start": _timestamp(item["service_period_start"]) or "",
            }
            self.store.insert("subscriptions", subscription, uuid=subscription["uuid"], **key)
            return subscription
        start = _timestamp(item["service_period_start"]) or ""
        if start >= subscription.get("_latest_start", ""):
            subscription["plan_uuid"] = item["plan_uuid"]  # the plan of the latest period
            subscription["_latest_start"] = start
        if item.get("subscription_set_external_id"):
            subscription["subscription_set_external_id"] = item["subscription_set_external_id"]
        return subscription

    def write(self, invoice: dict[str, Any], check: InvoiceCheck | None = None) -> dict[str, Any]:
        """Store one checked invoice; with `check`, the documented invalid cases are stored with `errors`."""
        invoice_errors, line_errors, transaction_errors = (
            check.stored_errors(invoice) if check is not None else ({}, [], [])
        )
        invoice_uuid = new_uuid("inv")
        doc = {
            "uuid": invoice_uuid,
            "external_id": invoice["external_id"],
            "date": _timestamp(invoice["date"]),
            "due_date": _timestamp(invoice.get("due_date")),
            "currency": invoice["currency"].upper(),
            "customer_uuid": self.customer["uuid"],
            "customer_external_id": self.customer["external_id"],
            "data_source_uuid": self.data_source_uuid,
            "collection_method": invoice.get("collection_method"),
            "errors": invoice_errors,
        }
        self.store.insert(
            "invoices",
            doc,
            uuid=invoice_uuid,
            data_source_uuid=self.data_source_uuid,
            customer_uuid=self.customer["uuid"],
            external_id=doc["external_id"],
        )
        for index, item in enumerate(invoice["line_items"]):
            errors = line_errors[index] if index < len(line_errors) else {}
            self.write_line_item(invoice_uuid, doc["currency"], item, errors, counts=not invoice_errors)
        for index, transaction in enumerate(invoice.get("transactions") or []):
            errors = transaction_errors[index] if index < len(transaction_errors) else {}
            tx = transaction_doc(invoice_uuid, self.data_source_uuid, transaction, errors)
            self.store.insert(
                "transactions",
                tx,
                uuid=tx["uuid"],
                invoice_uuid=invoice_uuid,
                data_source_uuid=self.data_source_uuid,
                external_id=tx["external_id"],
            )
        return render_invoice(self.emulator, doc)

    def write_line_item(
        self,
        invoice_uuid: str,
        currency: str,
        item: dict[str, Any],
        errors: dict[str, list[str]] | None = None,
        counts: bool = True,
    ) -> None:
        """Store one line; an invalid one (its own `errors`, or an invalid invoice: `counts` false) belongs to no
        subscription, so it makes no MRR (ChartMogul excludes invalid objects from metrics,
        docs/sources.md#cm-invalid-invoices)."""
        # docs/sources.md#cm-invoice-import: numeric fields are never null (0 defaults), `prorated` is a boolean.
        doc: dict[str, Any] = {
            "uuid": new_uuid("li"),
            "external_id": item.get("external_id"),
            "type": item["type"],
            "amount_in_cents": item["amount_in_cents"],
            "quantity": item.get("quantity") if item.get("quantity") is not None else 1,
            "discount_code": item.get("discount_code") or "",
            "discount_amount_in_cents": item.get("discount_amount_in_cents") or 0,
            "tax_amount_in_cents": item.get("tax_amount_in_cents") or 0,
            "transaction_fees_in_cents": item.get("transaction_fees_in_cents") or 0,
            "account_code": item.get("account_code") or "",
            "transaction_fees_currency": item.get("transaction_fees_currency"),
            "discount_description": item.get("discount_description"),
            "event_order": item.get("event_order"),
            "description": item.get("description"),
            "_currency": currency,
            "_invoice_uuid": invoice_uuid,
        }
        if errors:
            doc["errors"] = errors
        subscription_uuid = None
        if item["type"] in ("subscription", "trial"):
            valid = counts and not errors
            subscription = self.subscription_for(item) if valid else None
            cancelled_at = _timestamp(item.get("cancelled_at"))
            if subscription is not None:
                if cancelled_at and cancelled_at not in subscription["cancellation_dates"]:
                    subscription["cancellation_dates"] = sorted([*subscription["cancellation_dates"], cancelled_at])
                self.store.update("subscriptions", {"uuid": subscription["uuid"]}, subscription)
                subscription_uuid = subscription["uuid"]
            doc.update(
                {
                    "subscription_uuid": subscription_uuid,
                    "subscription_external_id": item["subscription_external_id"],
                    "subscription_set_external_id": item.get("subscription_set_external_id"),
                    "plan_uuid": item["plan_uuid"],
                    "prorated": bool(item.get("prorated", False)),
                    # docs/sources.md#cm-invoice-import: null unless given (recorded); the MRR engine treats null as
                    # differential
                    "proration_type": item.get("proration_type"),
                    "service_period_start": _timestamp(item["service_period_start"]),
                    "service_period_end": _timestamp(item["service_period_end"]),
                    "cancelled_at": cancelled_at,
                }
            )
        self.store.insert(
            "line_items",
            doc,
            uuid=doc["uuid"],
            invoice_uuid=invoice_uuid,
            data_source_uuid=self.data_source_uuid,
            external_id=doc["external_id"],
            subscription_uuid=subscription_uuid,
        )


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if not key.startswith("_")}


def render_invoices(emulator: Emulator, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    uuids = [doc["uuid"] for doc in docs]
    line_items: dict[str, list[dict[str, Any]]] = {uuid: [] for uuid in uuids}
    transactions: dict[str, list[dict[str, Any]]] = {uuid: [] for uuid in uuids}
    for _, item in emulator.store.rows("line_items", invoice_uuid=uuids):
        line_items[item["_invoice_uuid"]].append(item)
    for _, tx in emulator.store.rows("transactions", invoice_uuid=uuids):
        transactions[tx["_invoice_uuid"]].append(_public(tx))
    return [
        {
            **doc,
            "line_items": [_public(item) for item in line_items[doc["uuid"]]],
            "transactions": transactions[doc["uuid"]],
        }
        for doc in docs
    ]


def render_invoice(emulator: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    return render_invoices(emulator, [doc])[0]


def delete_invoices(emulator: Emulator, invoice_uuids: list[str]) -> None:
    """Delete invoices with their lines and transactions; subscriptions left without a line go too."""
    store = emulator.store
    touched = {
        uuid for uuid in store.column_values("line_items", "subscription_uuid", invoice_uuid=invoice_uuids) if uuid
    }
    store.delete("line_items", invoice_uuid=invoice_uuids)
    store.delete("transactions", invoice_uuid=invoice_uuids)
    store.delete("invoices", uuid=invoice_uuids)
    for subscription_uuid in touched:
        if not store.exists("line_items", subscription_uuid=subscription_uuid):
            store.delete("subscriptions", uuid=subscription_uuid)


def render_subscription(doc: dict[str, Any]) -> dict[str, Any]:
    """docs/sources.md#cm-subscriptions (recorded): the import-side subscription."""
    return {
        key: doc.get(key)
        for key in (
            "uuid",
            "external_id",
            "subscription_set_external_id",
            "cancellation_dates",
            "plan_uuid",
            "customer_uuid",
            "data_source_uuid",
        )
    }


# ---- routes -----------------------------------------------------------------------------------------


def register(router: Router, emulator: Emulator) -> None:
    store = emulator.store

    @router.route("POST", "/v1/import/customers/{uuid}/invoices")
    def import_invoices(request: Request) -> Response:
        customer = store.one("customers", uuid=request.params["uuid"])
        if customer is None:
            return json_response(404, UNKNOWN_CUSTOMER_BODY)  # docs/sources.md#cm-validation (chartmogul-python#119)
        body = emulator.body_object(request)
        invoices = body.get("invoices")
        if not isinstance(invoices, list):
            raise SchemaError("invoices")
        check = InvoiceCheck(emulator, customer["data_source_uuid"])
        for index, invoice in enumerate(invoices):
            check.check_schema(invoice, f"invoices[{index}]")  # 400 before anything is stored
        writer = InvoiceWriter(emulator, customer)
        if emulator.options.invoice_batch_mode == "atomic":
            all_errors = [check.check_semantics(invoice) for invoice in invoices]
            if any(all_errors):
                # docs/sources.md#cm-partial-success: nothing stored; each invoice listed with its `errors` ({} when
                # valid)
                listed = [
                    {"external_id": inv.get("external_id"), "errors": errs}
                    for inv, errs in zip(invoices, all_errors, strict=True)
                ]
                return json_response(422, {"invoices": listed})
            return json_response(201, {"invoices": [writer.write(invoice, check) for invoice in invoices]})
        results: list[dict[str, Any]] = []
        failed = False
        for invoice in invoices:
            errors = check.check_semantics(invoice)
            if errors:
                failed = True
                results.append({"external_id": invoice.get("external_id"), "errors": errors})
            else:
                results.append(writer.write(invoice, check))
        # "partial" (docs/sources.md#cm-partial-success [inf]): valid invoices are stored even when the answer is 422.
        return json_response(422 if failed else 201, {"invoices": results})

    def list_invoices(request: Request, where: dict[str, Any], extra: dict[str, Any] | None = None) -> Response:
        return emulator.page(
            request, "invoices", "invoices", lambda docs: render_invoices(emulator, docs), extra, where
        )

    @router.route("GET", "/v1/invoices")
    def list_all(request: Request) -> Response:
        where = {
            key: request.query_one(key)
            for key in ("data_source_uuid", "external_id", "customer_uuid")
            if request.query_one(key)
        }
        # docs/sources.md#cm-pagination: no top-level `data_source_uuid` here (it breaks the client's namedtuple)
        return list_invoices(request, where)

    @router.route("GET", "/v1/import/customers/{uuid}/invoices")
    def list_for_customer(request: Request) -> Response:
        emulator.require("customers", "Customer not found", uuid=request.params["uuid"])
        customer_uuid = request.params["uuid"]
        return list_invoices(
            request, {"customer_uuid": customer_uuid}, {"customer_uuid": customer_uuid}
        )  # docs/sources.md#cm-invoice-list (recorded)

    @router.route("GET", "/v1/invoices/{uuid}")
    def retrieve(request: Request) -> Response:
        doc = emulator.require("invoices", INVOICE_NOT_FOUND, uuid=request.params["uuid"])
        return json_response(200, render_invoice(emulator, doc))

    @router.route("DELETE", "/v1/invoices/{uuid}")
    def delete(request: Request) -> Response:
        emulator.require("invoices", INVOICE_NOT_FOUND, uuid=request.params["uuid"])
        delete_invoices(emulator, [request.params["uuid"]])
        return empty_response(204)  # docs/sources.md#cm-invoice-list (recorded)

    @router.route("DELETE", "/v1/data_sources/{data_source_uuid}/customers/{customer_uuid}/invoices")
    def delete_all(request: Request) -> Response:
        emulator.require("data_sources", "Data source not found", uuid=request.params["data_source_uuid"])
        emulator.require("customers", "Customer not found", uuid=request.params["customer_uuid"])
        uuids = store.column_values(
            "invoices",
            "uuid",
            customer_uuid=request.params["customer_uuid"],
            data_source_uuid=request.params["data_source_uuid"],
        )
        delete_invoices(emulator, uuids)
        return empty_response(204)  # docs/sources.md#cm-invoice-list (recorded)

    @router.route("POST", "/v1/import/invoices/{uuid}/transactions")
    def add_transaction(request: Request) -> Response:
        invoice = emulator.require("invoices", INVOICE_NOT_FOUND, uuid=request.params["uuid"])
        body = emulator.body_object(request)
        check_transaction_schema(body, "transaction")
        check = InvoiceCheck(emulator, invoice["data_source_uuid"])
        errors = check.transaction_errors(body)
        if errors:
            # docs/sources.md#cm-summary: duplicate → {"errors":{"external_id":"has already been taken"}}
            return field_errors(errors)
        moment = parse_timestamp(body.get("date"))
        stored_errors = {"date": list(TRANSACTION_IN_FUTURE)} if moment and moment > emulator.now() else {}
        tx = transaction_doc(invoice["uuid"], invoice["data_source_uuid"], body, stored_errors)
        store.insert(
            "transactions",
            tx,
            uuid=tx["uuid"],
            invoice_uuid=invoice["uuid"],
            data_source_uuid=invoice["data_source_uuid"],
            external_id=tx["external_id"],
        )
        return json_response(201, _public(tx))  # docs/sources.md#cm-transactions

    @router.route("DELETE", "/v1/transactions/{uuid}")
    def delete_transaction(request: Request) -> Response:
        # https://dev.chartmogul.com/reference/transactions/delete ; chartmogul-python 4.11 `Transaction.destroy`
        emulator.require("transactions", "Transaction not found", uuid=request.params["uuid"])
        store.delete("transactions", uuid=request.params["uuid"])
        return empty_response(204)

    @router.route("GET", "/v1/import/customers/{uuid}/subscriptions")
    def list_subscriptions(request: Request) -> Response:
        emulator.require("customers", "Customer not found", uuid=request.params["uuid"])
        return emulator.page(
            request,
            "subscriptions",
            "subscriptions",
            lambda docs: [render_subscription(d) for d in docs],
            {"customer_uuid": request.params["uuid"]},
            {"customer_uuid": request.params["uuid"]},
        )

    @router.route("PATCH", "/v1/import/subscriptions/{uuid}")
    def cancel(request: Request) -> Response:
        subscription = emulator.require("subscriptions", SUBSCRIPTION_NOT_FOUND, uuid=request.params["uuid"])
        body = emulator.body_object(request)
        if "cancellation_dates" in body:
            raw_dates = body["cancellation_dates"]
            if not isinstance(raw_dates, list):
                return field_errors({"cancellation_dates": "must be a list of dates"})
            dates = [_cancellation_date(emulator, value, "cancellation_dates") for value in raw_dates]
            subscription["cancellation_dates"] = sorted({format_timestamp(moment) for moment in dates})
        elif "cancelled_at" in body:
            moment = _cancellation_date(emulator, body["cancelled_at"], "cancelled_at")
            subscription["cancellation_dates"] = sorted({*subscription["cancellation_dates"], format_timestamp(moment)})
        else:
            return field_errors({"cancelled_at": BLANK})
        store.update("subscriptions", {"uuid": subscription["uuid"]}, subscription)
        # docs/sources.md#cm-subscriptions (recorded): 202 + body
        return json_response(202, render_subscription(subscription))


def _cancellation_date(emulator: Emulator, value: Any, key: str) -> dt.datetime:
    """docs/sources.md#cm-subscriptions: an ISO 8601 time in the past; anything else is a 422."""
    moment = parse_timestamp(value)
    if moment is None:
        raise APIProblem(field_errors({key: "is not a valid date"}))
    if emulator.options.reject_future_cancellations and moment > emulator.now():
        raise APIProblem(field_errors({key: "must be in the past"}))
    return moment
