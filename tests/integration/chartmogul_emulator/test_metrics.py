"""Metrics computed from imported invoices, read through the client's Metrics API (docs/sources.md#cm-metrics)."""

from __future__ import annotations

import warnings
from typing import Any

import chartmogul

from .helpers import api_error, customer, data_source, import_invoices, invoice, plan, subscription_line


def test_chartmogul_prorated_invoice_example(chartmogul_config: Any) -> None:
    """reference / docs: $100/month upgraded at half-period to $250 → lines +$125 and −$50, MRR 250."""
    ds = data_source(chartmogul_config)
    cus = customer(chartmogul_config, ds.uuid, "cus_1")
    basic, pro = plan(chartmogul_config, ds.uuid, "basic"), plan(chartmogul_config, ds.uuid, "pro")
    import_invoices(
        chartmogul_config,
        cus.uuid,
        invoice("in_1", "2024-04-01", [subscription_line(basic.uuid, "2024-04-01", "2024-05-01", 10000)]),
        invoice(
            "in_2",
            "2024-04-16",
            [
                subscription_line(pro.uuid, "2024-04-16", "2024-05-01", 12500, prorated=True),
                subscription_line(basic.uuid, "2024-04-16", "2024-05-01", -5000, prorated=True),
            ],
        ),
    )
    series = chartmogul.Metrics.mrr(
        chartmogul_config, start_date="2024-04-01", end_date="2024-04-30", interval="day"
    ).get()
    by_day = {entry.date.isoformat(): entry for entry in series.entries}
    assert by_day["2024-04-15"].mrr == 10000
    assert by_day["2024-04-16"].mrr == 25000
    assert by_day["2024-04-16"].mrr_expansion == 15000
    assert by_day["2024-04-01"].mrr_new_business == 10000
    assert series.summary.current == 25000


def test_movements_customer_count_and_currency(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    monthly, yearly = plan(chartmogul_config, ds.uuid, "m"), plan(chartmogul_config, ds.uuid, "y", unit="year")
    alice, bob, carol = (customer(chartmogul_config, ds.uuid, f"cus_{name}") for name in ("alice", "bob", "carol"))
    # alice: $100/month from Jan, $150 from Mar (expansion); tax excluded
    import_invoices(
        chartmogul_config,
        alice.uuid,
        invoice(
            "a1",
            "2024-01-01",
            [subscription_line(monthly.uuid, "2024-01-01", "2024-02-01", 12000, tax_amount_in_cents=2000)],
        ),
        invoice("a2", "2024-03-01", [subscription_line(monthly.uuid, "2024-03-01", "2024-04-01", 15000)]),
    )
    # bob: €1,200/year from Feb → $110/month; cancelled in April (churn); reactivated in June at €600/year
    import_invoices(
        chartmogul_config,
        bob.uuid,
        invoice(
            "b1", "2024-02-01", [subscription_line(yearly.uuid, "2024-02-01", "2025-02-01", 120000)], currency="EUR"
        ),
    )
    [bob_sub] = chartmogul.Customer.subscriptions(chartmogul_config, uuid=bob.uuid).get().entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bob_import = (
            chartmogul.CustomerSubscription.list_imported(chartmogul_config, uuid=bob.uuid).get().subscriptions[0]
        )
    chartmogul.Subscription.cancel(chartmogul_config, uuid=bob_import.uuid, data={"cancelled_at": "2024-04-10"}).get()
    import_invoices(
        chartmogul_config,
        bob.uuid,
        invoice(
            "b2", "2024-06-01", [subscription_line(yearly.uuid, "2024-06-01", "2025-06-01", 60000)], currency="EUR"
        ),
    )
    # carol: $50/month in Jan, a one-time charge (no MRR) and a downgrade to $20 in May (contraction)
    import_invoices(
        chartmogul_config,
        carol.uuid,
        invoice(
            "c1",
            "2024-01-15",
            [
                subscription_line(monthly.uuid, "2024-01-15", "2024-02-15", 5000, subscription_external_id="si_c"),
                {"type": "one_time", "amount_in_cents": 99900},
            ],
        ),
        invoice(
            "c2",
            "2024-05-15",
            [subscription_line(monthly.uuid, "2024-05-15", "2024-06-15", 2000, subscription_external_id="si_c")],
        ),
    )
    assert bob_sub.mrr == 11000
    series = chartmogul.Metrics.mrr(
        chartmogul_config, start_date="2024-01-01", end_date="2024-06-30", interval="month"
    ).get()
    rows = [
        (
            e.date.isoformat(),
            e.mrr,
            e.mrr_new_business,
            e.mrr_expansion,
            e.mrr_contraction,
            e.mrr_churn,
            e.mrr_reactivation,
        )
        for e in series.entries
    ]
    assert rows == [
        ("2024-01-31", 15000, 15000, 0, 0, 0, 0),
        ("2024-02-29", 26000, 11000, 0, 0, 0, 0),
        ("2024-03-31", 31000, 0, 5000, 0, 0, 0),
        ("2024-04-30", 20000, 0, 0, 0, -11000, 0),
        ("2024-05-31", 17000, 0, 0, -3000, 0, 0),
        ("2024-06-30", 22500, 0, 0, 0, 0, 5500),
    ]
    counts = chartmogul.Metrics.customer_count(chartmogul_config, start_date="2024-01-01", end_date="2024-06-30").get()
    assert [e.customers for e in counts.entries] == [2, 3, 3, 2, 2, 3]
    everything = chartmogul.Metrics.all(chartmogul_config, start_date="2024-01-01", end_date="2024-06-30").get()
    last = everything.entries[-1]
    assert (last.mrr, last.arr, last.customers, last.arpa) == (22500, 270000, 3, 7500)
    assert (everything.summary.current_mrr, everything.summary.previous_mrr) == (22500, 17000)
    assert everything.entries[3].customer_churn_rate == round(1 / 3 * 100, 2)
    assert chartmogul.Customer.retrieve(chartmogul_config, uuid=carol.uuid).get().mrr == 2000


def test_metrics_parameters_are_validated(chartmogul_config: Any) -> None:
    status, body = api_error(lambda: chartmogul.Metrics.mrr(chartmogul_config, end_date="2024-01-31").get())
    assert (status, body["param"]) == (400, "start-date")
    status, body = api_error(
        lambda: chartmogul.Metrics.mrr(
            chartmogul_config, start_date="2024-01-01", end_date="2024-01-31", interval="hour"
        ).get()
    )
    assert (status, body["param"]) == (400, "interval")
