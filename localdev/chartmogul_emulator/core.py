"""State shared by the ChartMogul emulator's handlers: the store, the options and derived views
(subscription histories for the MRR engine, customer rendering)."""

from __future__ import annotations

import datetime as dt
import uuid as uuid_module
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from localdev.chartmogul_emulator import metrics
from localdev.chartmogul_emulator.options import EmulatorOptions
from localdev.chartmogul_emulator.responses import (
    APIProblem,
    decode_cursor,
    not_found,
    page_envelope,
    per_page,
    schema_error,
)
from localdev.chartmogul_emulator.store import Store
from localdev.chartmogul_emulator.validation import SchemaError, format_timestamp, parse_timestamp
from localdev.emulator_kit import Request, Response, json_response

if TYPE_CHECKING:
    from localdev.chartmogul_emulator.api_bulk import BulkWorker

Handler = Callable[[Request], Response]


def new_uuid(prefix: str) -> str:
    """docs/sources.md#cm-transport: object ids are a type prefix plus a standard UUID (`cus_…`, `inv_…`)."""
    return f"{prefix}_{uuid_module.uuid4()}"


class Emulator:
    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.store = Store(options.db_path)
        self._bulk_worker: BulkWorker | None = None

    # ---- background work (the bulk import worker) ------------------------------------------------------

    def start_background(self) -> None:
        """Start the bulk-import worker (docs/sources.md#cm-bulk-import: imports progress on their own)."""
        from localdev.chartmogul_emulator.api_bulk import BulkWorker  # late: api_bulk imports this module

        if self._bulk_worker is None:
            self._bulk_worker = BulkWorker(self)
        self._bulk_worker.start()

    def stop_background(self) -> None:
        if self._bulk_worker is not None:
            self._bulk_worker.stop()

    # ---- request helpers ---------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.options.clock()

    def body_object(self, request: Request, param: str = "body") -> dict[str, Any]:
        """The JSON body as an object; 400 when it is valid JSON of another kind."""
        body = request.json()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise APIProblem(schema_error(SchemaError(param)))
        return body

    def require(self, table: str, message: str, **where: Any) -> dict[str, Any]:
        """The stored object, or a 404 `{"error": message}` (docs/sources.md#cm-errors)."""
        found = self.store.one(table, **where)
        if found is None:
            raise APIProblem(not_found(message))
        return found

    def page(
        self,
        request: Request,
        table: str,
        key: str,
        render: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
        extra: dict[str, Any] | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Response:
        """One cursor page of `table` (docs/sources.md#cm-pagination): `per_page` ≤ 200, `has_more`, opaque `cursor`."""
        size = per_page(request)
        rows = self.store.rows(
            table, after_seq=decode_cursor(request.query_one("cursor")), limit=size + 1, **(where or {})
        )
        has_more = len(rows) > size
        rows = rows[:size]
        last_seq = rows[-1][0] if rows else None
        items = render([doc for _, doc in rows])
        return json_response(200, page_envelope(key, items, has_more, last_seq, extra))

    # ---- MRR inputs ----------------------------------------------------------------------------------

    def subscription_histories(
        self, customer_uuids: list[str] | None = None
    ) -> dict[str, dict[str, metrics.SubscriptionHistory]]:
        """customer uuid → subscription uuid → the lines and cancellations the MRR engine needs."""
        where: dict[str, Any] = {} if customer_uuids is None else {"customer_uuid": customer_uuids}
        subscriptions = self.store.docs("subscriptions", **where)
        plans = {plan["uuid"]: plan for plan in self.store.docs("plans")}
        by_uuid: dict[str, metrics.SubscriptionHistory] = {}
        result: dict[str, dict[str, metrics.SubscriptionHistory]] = {}
        for subscription in subscriptions:
            history = metrics.SubscriptionHistory(
                cancellations=[moment for moment in map(parse_timestamp, subscription["cancellation_dates"]) if moment]
            )
            by_uuid[subscription["uuid"]] = history
            result.setdefault(subscription["customer_uuid"], {})[subscription["uuid"]] = history
        if not by_uuid:
            return result
        for line in self.store.docs("line_items", subscription_uuid=list(by_uuid)):
            plan = plans.get(line.get("plan_uuid") or "")
            if line["type"] != "subscription" or plan is None:
                continue  # docs/sources.md#cm-pagination / rules: only subscription lines make MRR (trial lines do not)
            start, end = parse_timestamp(line["service_period_start"]), parse_timestamp(line["service_period_end"])
            if start is None or end is None:
                continue
            by_uuid[line["subscription_uuid"]].lines.append(
                metrics.SubscriptionLine(
                    start=start,
                    end=end,
                    amount_in_cents=line["amount_in_cents"],
                    tax_amount_in_cents=line["tax_amount_in_cents"],
                    currency=line["_currency"],
                    prorated=bool(line.get("prorated")),
                    interval_unit=plan["interval_unit"],
                    interval_count=plan["interval_count"],
                )
            )
        return result

    def customer_figures(self, customer_uuids: list[str]) -> dict[str, dict[str, Any]]:
        """Current `mrr`, `arr`, `status`, `customer-since` per customer (docs/sources.md#cm-customers, MRR rule 6)."""
        today = self.now().date()
        histories = self.subscription_histories(customer_uuids)
        figures: dict[str, dict[str, Any]] = {}
        for customer_uuid in customer_uuids:
            subscriptions = list(histories.get(customer_uuid, {}).values())
            mrr = metrics.customer_mrr(subscriptions, today, self.options.rates) if subscriptions else 0
            first_active = metrics.first_active_day(subscriptions, self.options.rates) if subscriptions else None
            if metrics.customer_counted(subscriptions, today, mrr, first_active):
                status = "Active"  # MRR > 0, or paid before and on $0 now (free-customer handling)
            elif first_active is not None and first_active <= today:
                status = "Cancelled"
            else:
                status = None  # keeps the lead status it was created with
            figures[customer_uuid] = {
                "mrr": mrr,
                "arr": mrr * 12,
                "status": status,
                "customer-since": format_timestamp(dt.datetime.combine(first_active, dt.time(), tzinfo=dt.UTC))
                if first_active is not None and first_active <= today
                else None,
            }
        return figures

    def render_customers(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        figures = self.customer_figures([doc["uuid"] for doc in docs])
        rendered = []
        for doc in docs:
            figure = figures[doc["uuid"]]
            customer = {key: value for key, value in doc.items() if not key.startswith("_")}
            customer.update(
                {
                    "mrr": figure["mrr"],
                    "arr": figure["arr"],
                    "status": figure["status"] or doc.get("_lead_status") or "New Lead",
                    "customer-since": figure["customer-since"],
                }
            )
            rendered.append(customer)
        return rendered

    def render_customer(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self.render_customers([doc])[0]

    # ---- lookups -------------------------------------------------------------------------------------

    def customer_by_external_id(self, data_source_uuid: str, external_id: str) -> dict[str, Any] | None:
        owners = self.store.column_values(
            "customer_ids", "customer_uuid", data_source_uuid=data_source_uuid, external_id=external_id
        )
        return self.store.one("customers", uuid=owners[0]) if owners else None
