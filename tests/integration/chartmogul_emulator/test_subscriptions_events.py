"""Subscriptions derived from line items, cancellation, and subscription events (docs/sources.md#cm-subscriptions,
#cm-subscription-events)."""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

import chartmogul
import requests

from localdev.chartmogul_emulator.running import RunningEmulator

from .helpers import api_error, customer, data_source, import_invoices, invoice, plan, subscription_line


def _imported_subscriptions(config: Any, customer_uuid: str) -> Any:
    with warnings.catch_warnings():
        # docs/sources.md#cm-subscriptions: deprecated in the SDKs, still served
        warnings.simplefilter("ignore", DeprecationWarning)
        return chartmogul.CustomerSubscription.list_imported(config, uuid=customer_uuid).get()


def _setup(config: Any) -> tuple[Any, Any, Any]:
    ds = data_source(config)
    cus = customer(config, ds.uuid, "cus_1")
    pro = plan(config, ds.uuid, "price_pro")
    import_invoices(
        config,
        cus.uuid,
        invoice(
            "in_1",
            "2024-01-01",
            [
                subscription_line(pro.uuid, "2024-01-01", "2024-02-01", 3000, subscription_external_id="si_a"),
                subscription_line(pro.uuid, "2024-01-01", "2024-02-01", 2000, subscription_external_id="si_b"),
            ],
        ),
    )
    return ds, cus, pro


def test_subscriptions_are_derived_from_subscription_lines(chartmogul_config: Any) -> None:
    ds, cus, pro = _setup(chartmogul_config)
    listed = _imported_subscriptions(chartmogul_config, cus.uuid)
    assert listed.customer_uuid == cus.uuid
    assert [(s.external_id, s.plan_uuid, s.cancellation_dates) for s in listed.subscriptions] == [
        ("si_a", pro.uuid, []),
        ("si_b", pro.uuid, []),
    ]
    assert all(s.uuid.startswith("sub_") and s.data_source_uuid == ds.uuid for s in listed.subscriptions)
    view = chartmogul.Customer.subscriptions(chartmogul_config, uuid=cus.uuid).get()
    assert [(s.external_id, s.mrr, s.arr, s.status, s.plan) for s in view.entries] == [
        ("si_a", 3000, 36000, "active", "Plan price_pro"),
        ("si_b", 2000, 24000, "active", "Plan price_pro"),
    ]
    assert not view.entries[0].uuid.startswith("sub_")  # docs/sources.md#cm-subscriptions: the metrics view's own id


def test_cancel_with_cancelled_at_stops_mrr(chartmogul_config: Any) -> None:
    _, cus, _ = _setup(chartmogul_config)
    first = _imported_subscriptions(chartmogul_config, cus.uuid).subscriptions[0]
    assert chartmogul.Customer.retrieve(chartmogul_config, uuid=cus.uuid).get().mrr == 5000
    answer = chartmogul.Subscription.cancel(
        chartmogul_config, uuid=first.uuid, data={"cancelled_at": "2024-03-15"}
    ).get()
    assert answer is None  # docs/sources.md#cm-subscriptions: 202, the client drops the body
    after = _imported_subscriptions(chartmogul_config, cus.uuid).subscriptions[0]
    assert [d.isoformat() for d in after.cancellation_dates] == ["2024-03-15T00:00:00+00:00"]
    refreshed = chartmogul.Customer.retrieve(chartmogul_config, uuid=cus.uuid).get()
    assert (refreshed.mrr, refreshed.status) == (2000, "Active")
    second = _imported_subscriptions(chartmogul_config, cus.uuid).subscriptions[1]
    chartmogul.Subscription.cancel(
        chartmogul_config, uuid=second.uuid, data={"cancelled_at": "2024-03-20 12:00:00"}
    ).get()
    churned = chartmogul.Customer.retrieve(chartmogul_config, uuid=cus.uuid).get()
    assert (churned.mrr, churned.status) == (0, "Cancelled")


def test_cancellation_dates_replace_the_history(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    _, cus, _ = _setup(chartmogul_config)
    sub = _imported_subscriptions(chartmogul_config, cus.uuid).subscriptions[0]
    chartmogul.Subscription.cancel(chartmogul_config, uuid=sub.uuid, data={"cancelled_at": "2024-03-15"}).get()
    raw = requests.patch(
        f"{chartmogul_emulator.api_url}/import/subscriptions/{sub.uuid}",
        json={"cancellation_dates": []},
        auth=(chartmogul_emulator.api_key, ""),
        timeout=5,
    )
    assert raw.status_code == 202
    assert raw.json() == {
        "uuid": sub.uuid,
        "external_id": "si_a",
        "subscription_set_external_id": None,
        "cancellation_dates": [],
        "plan_uuid": sub.plan_uuid,
        "customer_uuid": cus.uuid,
        "data_source_uuid": sub.data_source_uuid,
    }
    assert chartmogul.Customer.retrieve(chartmogul_config, uuid=cus.uuid).get().mrr == 5000


def test_cancel_validation(chartmogul_config: Any) -> None:
    _, cus, _ = _setup(chartmogul_config)
    sub = _imported_subscriptions(chartmogul_config, cus.uuid).subscriptions[0]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()
    status, body = api_error(
        lambda: chartmogul.Subscription.cancel(chartmogul_config, uuid=sub.uuid, data={"cancelled_at": future}).get()
    )
    assert (status, body) == (422, {"errors": {"cancelled_at": "must be in the past"}})
    status, body = api_error(
        lambda: chartmogul.Subscription.cancel(chartmogul_config, uuid=sub.uuid, data={"cancelled_at": "soon"}).get()
    )
    assert (status, body) == (422, {"errors": {"cancelled_at": "is not a valid date"}})
    status, body = api_error(
        lambda: chartmogul.Subscription.cancel(
            chartmogul_config, uuid="sub_missing", data={"cancelled_at": "2024-01-01"}
        ).get()
    )
    assert (status, body) == (404, {"error": "Subscription not found"})


def test_a_cancelled_at_on_a_line_item_cancels_the_subscription(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    cus = customer(chartmogul_config, ds.uuid, "cus_1")
    pro = plan(chartmogul_config, ds.uuid)
    line = subscription_line(pro.uuid, "2024-01-01", "2024-02-01", 1000, cancelled_at="2024-01-20")
    import_invoices(chartmogul_config, cus.uuid, invoice("in_1", "2024-01-01", [line]))
    [sub] = _imported_subscriptions(chartmogul_config, cus.uuid).subscriptions
    assert [d.date().isoformat() for d in sub.cancellation_dates] == ["2024-01-20"]
    assert chartmogul.Customer.retrieve(chartmogul_config, uuid=cus.uuid).get().mrr == 0


def _event(ds_uuid: str, **fields: Any) -> dict[str, Any]:
    return {
        "subscription_event": {
            "data_source_uuid": ds_uuid,
            "customer_external_id": "cus_1",
            "event_type": "subscription_start_scheduled",
            "event_date": "2024-02-16",
            "effective_date": "2024-02-28",
            "subscription_external_id": "si_a",
            "plan_external_id": "price_pro",
            "currency": "USD",
            "amount_in_cents": 1000,
            "quantity": 1,
            **fields,
        }
    }


def test_subscription_event_create_list_delete(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = chartmogul.SubscriptionEvent.create(chartmogul_config, data=_event(ds.uuid, external_id="ev_1")).get()
    assert isinstance(created.id, int) and created.event_type == "subscription_start_scheduled"
    assert created.effective_date.isoformat() == "2024-02-28T00:00:00+00:00" and created.tax_amount_in_cents is None
    second = chartmogul.SubscriptionEvent.create(
        chartmogul_config, data=_event(ds.uuid, external_id="ev_2", event_type="subscription_cancelled")
    ).get()
    listed = chartmogul.SubscriptionEvent.all(chartmogul_config, data_source_uuid=ds.uuid).get()
    assert [e.external_id for e in listed.subscription_events] == ["ev_1", "ev_2"] and listed.has_more is False
    only = chartmogul.SubscriptionEvent.all(chartmogul_config, event_type="subscription_cancelled").get()
    assert [e.id for e in only.subscription_events] == [second.id]
    assert (
        chartmogul.SubscriptionEvent.destroy_with_params(
            chartmogul_config, data={"subscription_event": {"id": created.id}}
        ).get()
        is None
    )
    # docs/sources.md#cm-subscription-events: Ruby identifies the event in the query string instead of a JSON body
    by_query = requests.delete(
        chartmogul_emulator.api_url + "/subscription_events",
        params={"subscription_event[external_id]": "ev_2", "subscription_event[data_source_uuid]": ds.uuid},
        auth=(chartmogul_emulator.api_key, ""),
        timeout=5,
    )
    assert by_query.status_code == 204
    assert chartmogul.SubscriptionEvent.all(chartmogul_config, data_source_uuid=ds.uuid).get().subscription_events == []
    status, body = api_error(
        lambda: chartmogul.SubscriptionEvent.destroy_with_params(
            chartmogul_config, data={"subscription_event": {"id": created.id}}
        ).get()
    )
    assert (status, body) == (404, {"error": "Subscription event not found"})


def test_subscription_event_validation(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    chartmogul.SubscriptionEvent.create(chartmogul_config, data=_event(ds.uuid, external_id="ev_1")).get()
    status, body = api_error(
        lambda: chartmogul.SubscriptionEvent.create(chartmogul_config, data=_event(ds.uuid, external_id="ev_1")).get()
    )
    assert (status, body) == (422, {"errors": {"external_id": "has already been taken"}})
    status, body = api_error(
        lambda: chartmogul.SubscriptionEvent.create(
            chartmogul_config, data=_event(ds.uuid, plan_external_id=None)
        ).get()
    )
    assert (status, body) == (422, {"errors": {"plan_external_id": "can't be blank"}})
    status, body = api_error(
        lambda: chartmogul.SubscriptionEvent.create(chartmogul_config, data=_event(ds.uuid, event_type="started")).get()
    )
    assert (status, body["param"]) == (400, "subscription_event[event_type]")


def test_subscription_event_update(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = chartmogul.SubscriptionEvent.create(chartmogul_config, data=_event(ds.uuid, external_id="ev_1")).get()
    updated = chartmogul.SubscriptionEvent.modify_with_params(
        chartmogul_config, data={"subscription_event": {"id": created.id, "amount_in_cents": 2500}}
    ).get()
    assert (updated.id, updated.amount_in_cents, updated.external_id) == (created.id, 2500, "ev_1")
