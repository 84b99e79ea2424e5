"""Small builders and an error catcher for the emulator tests (all calls go through the real client)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import chartmogul
import pytest


def api_error(call: Callable[[], Any]) -> tuple[int, Any]:
    """Run a client call that must fail with `chartmogul.APIError`; return (status, parsed body or text)."""
    with pytest.raises(chartmogul.APIError) as caught:
        call()
    response = caught.value.__cause__.response
    try:
        return response.status_code, json.loads(response.content)
    except ValueError:
        return response.status_code, response.content.decode()


def data_source(config: Any, name: str = "In-house billing") -> Any:
    return chartmogul.DataSource.create(config, data={"name": name}).get()


def customer(config: Any, ds_uuid: str, external_id: str = "cus_1", **fields: Any) -> Any:
    return chartmogul.Customer.create(
        config, data={"data_source_uuid": ds_uuid, "external_id": external_id, **fields}
    ).get()


def plan(config: Any, ds_uuid: str, external_id: str = "price_1", unit: str = "month", count: int = 1) -> Any:
    return chartmogul.Plan.create(
        config,
        data={
            "data_source_uuid": ds_uuid,
            "name": f"Plan {external_id}",
            "interval_count": count,
            "interval_unit": unit,
            "external_id": external_id,
        },
    ).get()


def subscription_line(plan_uuid: str, start: str, end: str, amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "subscription",
        "subscription_external_id": extra.pop("subscription_external_id", "si_1"),
        "plan_uuid": plan_uuid,
        "service_period_start": start,
        "service_period_end": end,
        "amount_in_cents": amount,
        **extra,
    }


def invoice(
    external_id: str, date: str, lines: list[dict[str, Any]], currency: str = "USD", **extra: Any
) -> dict[str, Any]:
    return {"external_id": external_id, "date": date, "currency": currency, "line_items": lines, **extra}


def import_invoices(config: Any, customer_uuid: str, *invoices: dict[str, Any]) -> Any:
    return chartmogul.Invoice.create(config, uuid=customer_uuid, data={"invoices": list(invoices)}).get()
