"""Metrics computed from the imported data by the MRR rules (docs/sources.md#cm-metrics; docs/mapping-decisions.md):
`/metrics/all`, `/metrics/mrr`, `/metrics/arr`, `/metrics/customer-count`, the per-customer
subscription view `/customers/{uuid}/subscriptions` and its activities `/customers/{uuid}/activities`."""

from __future__ import annotations

import datetime as dt
import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from localdev.chartmogul_emulator import metrics
from localdev.chartmogul_emulator.core import Emulator
from localdev.chartmogul_emulator.responses import coded_error, decode_cursor, encode_cursor, per_page
from localdev.chartmogul_emulator.validation import format_metrics_timestamp
from localdev.emulator_kit import Request, Response, Router, json_response

INTERVALS = ("day", "week", "month", "quarter", "year")
MAX_ENTRIES = 5000  # a day interval over 13 years; guards the emulator against an accidental huge range


def percentage_change(previous: float, current: float) -> float:
    if previous == 0:
        return 0.0
    return round((current - previous) / abs(previous) * 100, 1)


def _date_param(request: Request, name: str) -> dt.date | Response:
    text = request.query_one(name)
    if not text:
        return coded_error(400, f'Parameter "{name}" is required', name)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return coded_error(400, f'Parameter "{name}" does not have a valid value', name)


def _derived(previous: metrics.PeriodFigures, current: metrics.PeriodFigures) -> dict[str, Any]:
    """The /metrics/all figures beyond MRR and customers (simple definitions, documented in the README)."""
    arpa = current.mrr // current.customers if current.customers else 0
    new_business = current.movements["new_business"]
    asp = new_business // current.new_customers if current.new_customers else 0
    churn_rate = round(current.churned_customers / previous.customers * 100, 2) if previous.customers else 0.0
    net_churn = -(
        current.movements["churn"]
        + current.movements["contraction"]
        + current.movements["expansion"]
        + current.movements["reactivation"]
    )
    mrr_churn_rate = round(net_churn / previous.mrr * 100, 2) if previous.mrr else 0.0
    ltv = round(arpa / (churn_rate / 100), 1) if churn_rate else 0.0
    return {
        "mrr": current.mrr,
        "arr": current.mrr * 12,
        "customers": current.customers,
        "arpa": arpa,
        "asp": asp,
        "customer-churn-rate": churn_rate,
        "mrr-churn-rate": mrr_churn_rate,
        "ltv": ltv,
    }


def _mrr_movements(period: metrics.PeriodFigures) -> dict[str, int]:
    """What /metrics/mrr adds to each entry: the period's MRR movements."""
    return {
        "mrr-new-business": period.movements["new_business"],
        "mrr-expansion": period.movements["expansion"],
        "mrr-contraction": period.movements["contraction"],
        "mrr-churn": period.movements["churn"],
        "mrr-reactivation": period.movements["reactivation"],
    }


def register(router: Router, emulator: Emulator) -> None:
    register_activities(router, emulator)

    def series(request: Request) -> tuple[metrics.PeriodFigures, list[metrics.PeriodFigures]] | Response:
        start, end = _date_param(request, "start-date"), _date_param(request, "end-date")
        if isinstance(start, Response):
            return start
        if isinstance(end, Response):
            return end
        interval = request.query_one("interval") or "month"
        if interval not in INTERVALS:
            return coded_error(400, 'Parameter "interval" does not have a valid value', "interval")
        if end < start:
            return coded_error(400, '"end-date" must not be before "start-date"', "end-date")
        if len(metrics.period_ends(start, min(end, start + dt.timedelta(days=MAX_ENTRIES)), interval)) >= MAX_ENTRIES:
            return coded_error(400, "Too many entries; use a longer interval", "interval")
        customers = {
            customer: list(subscriptions.values())
            for customer, subscriptions in emulator.subscription_histories().items()
        }
        return metrics.account_series(customers, start, end, interval, emulator.options.rates)

    def summary(values: list[float], baseline: float, name: str | None = None) -> dict[str, Any]:
        current = values[-1] if values else baseline
        previous = values[-2] if len(values) > 1 else baseline
        if name is None:
            return {"current": current, "previous": previous, "percentage-change": percentage_change(previous, current)}
        return {
            f"current-{name}": current,
            f"previous-{name}": previous,
            f"{name}-percentage-change": percentage_change(previous, current),
        }

    def one_figure(
        request: Request,
        key: str,
        value: Callable[[metrics.PeriodFigures], float],
        details: Callable[[metrics.PeriodFigures], dict[str, int]] | None = None,
    ) -> Response:
        """A figure per period with its change on the period before (and `details(period)`), and its summary."""
        result = series(request)
        if isinstance(result, Response):
            return result
        baseline, periods = result
        entries, previous = [], baseline
        for period in periods:
            entries.append(
                {
                    "date": period.date.isoformat(),
                    key: value(period),
                    "percentage-change": percentage_change(value(previous), value(period)),
                    **(details(period) if details else {}),
                }
            )
            previous = period
        return json_response(
            200, {"entries": entries, "summary": summary([value(p) for p in periods], value(baseline))}
        )

    router.add("GET", "/v1/metrics/mrr", lambda request: one_figure(request, "mrr", lambda p: p.mrr, _mrr_movements))
    router.add("GET", "/v1/metrics/arr", lambda request: one_figure(request, "arr", lambda p: p.mrr * 12))
    router.add(
        "GET", "/v1/metrics/customer-count", lambda request: one_figure(request, "customers", lambda p: p.customers)
    )

    @router.route("GET", "/v1/metrics/all")
    def all_metrics(request: Request) -> Response:
        result = series(request)
        if isinstance(result, Response):
            return result
        baseline, periods = result
        rows: list[dict[str, Any]] = []
        previous_figures = baseline
        for period in periods:
            rows.append(_derived(previous_figures, period))
            previous_figures = period
        baseline_row = _derived(metrics.PeriodFigures(baseline.date), baseline)
        entries = []
        for index, (period, row) in enumerate(zip(periods, rows, strict=True)):
            before = rows[index - 1] if index else baseline_row
            entry: dict[str, Any] = {"date": period.date.isoformat()}
            for name, value in row.items():
                entry[name] = value
                entry[f"{name}-percentage-change"] = percentage_change(before[name], value)
            entries.append(entry)
        summary_block: dict[str, Any] = {}
        for name in baseline_row:
            summary_block.update(summary([row[name] for row in rows], baseline_row[name], name))
        return json_response(200, {"entries": entries, "summary": summary_block})

    @router.route("GET", "/v1/customers/{uuid}/subscriptions")
    def customer_subscriptions(request: Request) -> Response:
        """docs/sources.md#cm-subscriptions (recorded): the metrics view; its `uuid` has no `sub_` prefix."""
        customer = emulator.require("customers", "Customer not found", uuid=request.params["uuid"])
        histories = emulator.subscription_histories([customer["uuid"]]).get(customer["uuid"], {})
        plans = {
            plan["uuid"]: plan for plan in emulator.store.docs("plans", data_source_uuid=customer["data_source_uuid"])
        }
        today = emulator.now().date()

        def render(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            rendered = []
            for doc in docs:
                history = histories.get(doc["uuid"], metrics.SubscriptionHistory())
                mrr = metrics.customer_mrr([history], today, emulator.options.rates)
                plan = plans.get(doc["plan_uuid"], {})
                starts = [line.start for line in history.lines]
                ends = [line.end for line in history.lines]
                latest_quantity = _latest_quantity(emulator, doc["uuid"])
                live = metrics.subscription_live(history, metrics.end_of_day(today))  # a $0 one is active too
                cancelled = not live and history.cancellations
                end = max(history.cancellations) if cancelled else (max(ends) if ends else None)
                rendered.append(
                    {
                        "id": uuid_module.UUID(doc["uuid"].removeprefix("sub_")).int % 900_000_000 + 100_000_000,
                        "external_id": doc["external_id"],
                        "subscription_set_external_id": doc.get("subscription_set_external_id"),
                        "quantity": latest_quantity,
                        "uuid": doc["uuid"].removeprefix("sub_"),
                        "mrr": mrr,
                        "arr": mrr * 12,
                        "status": "active" if live else "cancelled",
                        "plan": plan.get("name", ""),
                        "billing-cycle": plan.get("interval_unit"),
                        "billing-cycle-count": plan.get("interval_count"),
                        "start-date": format_metrics_timestamp(min(starts)) if starts else None,
                        "end-date": format_metrics_timestamp(end) if end else None,
                        "currency": "USD",
                        "currency-sign": "$",
                    }
                )
            return rendered

        return emulator.page(request, "subscriptions", "entries", render, where={"customer_uuid": customer["uuid"]})


def subscription_activities(
    history: metrics.SubscriptionHistory, rates: dict[str, float], today: dt.date
) -> list[tuple[dt.date, int, int, str]]:
    """(day, MRR after, movement, type) each time the subscription's MRR at the end of a day changes.

    MRR at the end of a day (rule 6) only changes on a day a line starts or ends or a cancellation falls, so
    evaluating on those days finds every movement. The type follows rule 7 for the subscription.
    """
    days: set[dt.date] = set()
    for line in history.lines:
        days.update({line.start.date(), line.end.date(), (line.end - dt.timedelta(microseconds=1)).date()})
    days.update(moment.date() for moment in history.cancellations)
    found: list[tuple[dt.date, int, int, str]] = []
    previous, was_active = 0, False
    for day in sorted(d for d in days if d <= today):
        current = metrics.customer_mrr([history], day, rates)
        if current == previous:
            continue
        kind = metrics.classify_movement(previous, current, was_active) or ""
        found.append((day, current, current - previous, _ACTIVITY_TYPES[kind]))
        was_active, previous = True, current
    return found


# docs: the activity `type` values of the activities endpoints (reference chartmogul-import-api
# docs/sources.md#cm-metrics).
_ACTIVITY_TYPES = {
    "new_business": "new_biz",
    "expansion": "expansion",
    "contraction": "contraction",
    "churn": "churn",
    "reactivation": "reactivation",
}


def register_activities(router: Router, emulator: Emulator) -> None:
    @router.route("GET", "/v1/customers/{uuid}/activities")
    def customer_activities(request: Request) -> Response:
        """https://dev.chartmogul.com/reference/list-customer-activities: the customer's MRR movements, oldest
        first, one per subscription and day, cursor-paged (the recorded answer in the emulator README)."""
        customer = emulator.require("customers", "Customer not found", uuid=request.params["uuid"])
        histories = emulator.subscription_histories([customer["uuid"]]).get(customer["uuid"], {})
        external_ids = {
            doc["uuid"]: doc["external_id"]
            for doc in emulator.store.docs("subscriptions", customer_uuid=customer["uuid"])
        }
        today = emulator.now().date()
        entries: list[dict[str, Any]] = []
        for subscription_uuid, history in sorted(histories.items()):
            for day, mrr, movement, kind in subscription_activities(history, emulator.options.rates, today):
                entries.append(
                    {
                        "description": f"{kind} of subscription {external_ids.get(subscription_uuid, '')}",
                        "activity-mrr-movement": movement,
                        "activity-mrr": mrr,
                        "activity-arr": mrr * 12,
                        "date": format_metrics_timestamp(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)),
                        "type": kind,
                        # Amounts are in the account currency (the emulator's rate table converts to USD).
                        "currency": "USD",
                        "currency-sign": "$",
                        "subscription-external-id": external_ids.get(subscription_uuid, ""),
                    }
                )
        entries.sort(key=lambda entry: (entry["date"], entry["subscription-external-id"]))
        for number, entry in enumerate(entries, start=1):
            entry["id"] = number
        start, size = decode_cursor(request.query_one("cursor")), per_page(request)
        page = entries[start : start + size]
        has_more = start + size < len(entries)
        return json_response(
            200,
            {
                "entries": page,
                "has_more": has_more,
                "per_page": size,
                "cursor": encode_cursor(start + size) if has_more else None,
            },
        )


def _latest_quantity(emulator: Emulator, subscription_uuid: str) -> int | None:
    lines = [
        line
        for line in emulator.store.docs("line_items", subscription_uuid=subscription_uuid)
        if line["type"] == "subscription" and not line.get("prorated")
    ]
    if not lines:
        return None
    latest = max(lines, key=lambda line: line["service_period_start"])
    return int(latest["quantity"])
