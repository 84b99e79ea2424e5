"""The ground truth: expected ChartMogul objects reconcile with the Stripe account, and MRR follows the rules.

Expected MRR figures here are recomputed in the test from the price the API shows (unit amount, interval,
currency) and the fixed FX table, not taken from the generator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localdev.fx import DEFAULT_RATES
from localdev.scenarios import Account, generate_account
from localdev.scenarios.calendar import iso
from localdev.stripe_emulator.render import render

MONTHS_PER = {("week", 1): 365.25 / 12 / 7, ("month", 1): 1.0, ("month", 3): 1 / 3, ("year", 1): 1 / 12}


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account()


@pytest.fixture(scope="module")
def truth(account: Account) -> dict[str, Any]:
    return account.ground_truth()


def _stripe(account: Account, resource: str, object_id: str) -> dict[str, Any]:
    store = account.store
    record = store.collection(resource).get(object_id)
    assert record is not None
    return render(store, resource, record, store.now)


def _expected_monthly_usd(price: dict[str, Any], quantity: int = 1) -> float:
    recurring = price["recurring"]
    factor = MONTHS_PER[(recurring["interval"], recurring["interval_count"])]
    return float(price["unit_amount"] * quantity * factor * DEFAULT_RATES[price["currency"].upper()])


def _only_subscription(account: Account, customer: str) -> dict[str, Any]:
    subs = [s for s in account.store.subscriptions.values() if s.customer == customer]
    assert len(subs) == 1
    return _stripe(account, "subscriptions", subs[0].id)


def test_ground_truth_is_plain_json(truth: dict[str, Any]) -> None:
    assert json.loads(json.dumps(truth)) == truth
    assert truth["format"].startswith("chartmogul-sync/stripe-ground-truth/")
    assert len(truth["months"]) == 24 and truth["months"][0] == "2024-11" and truth["months"][-1] == "2026-10"


def test_imported_invoices_are_finalized_non_void_and_reconcile(account: Account, truth: dict[str, Any]) -> None:
    for customer_id, expected in truth["customers"].items():
        stripe_invoices = [i for i in account.store.invoices.values() if i.customer == customer_id]
        importable = {i.id for i in stripe_invoices if i.status in ("open", "paid", "uncollectible")}
        assert {invoice["external_id"] for invoice in expected["invoices"]} == importable
        for invoice in expected["invoices"]:
            shown = _stripe(account, "invoices", invoice["external_id"])
            assert sum(line["amount_in_cents"] for line in invoice["line_items"]) == shown["total"]
            assert invoice["currency"] == shown["currency"].upper()
            paid = [t for t in invoice["transactions"] if t["type"] == "payment" and t["result"] == "successful"]
            assert sum(t["amount_in_cents"] for t in paid) == shown["amount_paid"]


def test_totals_are_the_sum_of_customers(truth: dict[str, Any]) -> None:
    for month in truth["months"]:
        per_customer = [c["mrr"][month] for c in truth["customers"].values()]
        assert truth["totals"]["mrr"][month] == sum(per_customer)
        assert truth["totals"]["customers"][month] == sum(c["active"][month] for c in truth["customers"].values())
        assert all(c["active"][month] for c in truth["customers"].values() if c["mrr"][month] > 0)
    assert truth["totals"]["mrr"]["2026-10"] > 0


@pytest.mark.parametrize("profile", ["monthly", "weekly", "quarterly", "yearly", "tax_exclusive", "metered"])
def test_mrr_of_a_running_subscription_is_its_price_normalised_to_a_month(
    account: Account, truth: dict[str, Any], profile: str
) -> None:
    for customer in account.customers_with(profile)[:5]:
        sub = _only_subscription(account, customer)
        licensed = [item for item in sub["items"]["data"] if item["price"]["recurring"]["usage_type"] == "licensed"]
        expected = sum(_expected_monthly_usd(item["price"], item["quantity"]) for item in licensed)
        mrr = truth["customers"][customer]["mrr"]["2026-10"]
        if profile == "metered":  # plus last month's usage, billed in arrears
            assert mrr > expected
        else:
            assert abs(mrr - expected) <= 1, (customer, mrr, expected)


def test_inclusive_tax_is_taken_out_of_mrr(account: Account, truth: dict[str, Any]) -> None:
    customer = account.customers_with("tax_inclusive")[0]
    sub = _only_subscription(account, customer)
    price = sub["items"]["data"][0]["price"]
    assert sub["default_tax_rates"][0]["inclusive"] is True
    net = price["unit_amount"] / 1.2  # VAT 20 % inside the price
    assert abs(truth["customers"][customer]["mrr"]["2026-10"] - net * DEFAULT_RATES[price["currency"].upper()]) <= 1


def test_an_upgrade_reaches_the_new_price_in_the_month_it_happens(account: Account, truth: dict[str, Any]) -> None:
    """ChartMogul's example: $100 → $250 at half-period gives 100 + (125 − 50) × 2 = 250 (mapping rule 4)."""
    customer = account.customers_with("upgrade_prorated")[0]
    expected = truth["customers"][customer]
    update = next(
        invoice
        for invoice in expected["invoices"]
        if _stripe(account, "invoices", invoice["external_id"])["billing_reason"] == "subscription_update"
    )
    credit, debit = sorted(update["line_items"], key=lambda line: line["amount_in_cents"])
    assert credit["amount_in_cents"] < 0 < debit["amount_in_cents"] and credit["prorated"] and debit["prorated"]
    assert credit["subscription_external_id"] == debit["subscription_external_id"]
    month = update["date"][:7]
    sub = _only_subscription(account, customer)
    new_price = _expected_monthly_usd(sub["items"]["data"][0]["price"])
    assert abs(expected["mrr"][month] - new_price) <= 2


def test_customers_who_never_pay_are_not_active(account: Account, truth: dict[str, Any]) -> None:
    for profile in ("coupon_100", "trial_paused", "lead_only"):
        for customer in account.customers_with(profile):
            assert set(truth["customers"][customer]["mrr"].values()) == {0}, profile
            assert not any(truth["customers"][customer]["active"].values()), profile


def test_a_paying_customer_moved_to_a_100_percent_coupon_stays_active_and_contracts(
    account: Account, truth: dict[str, Any]
) -> None:
    # ChartMogul's free-customer handling: still a customer at $0, the MRR drop is contraction, not churn.
    customer = account.customers_with("paying_then_free")[0]  # the early one: room for the whole story
    expected = truth["customers"][customer]
    months = truth["months"]
    paid = [m for m in months if expected["mrr"][m] > 0]
    free = [m for m in months if m > paid[-1]]
    assert paid and free and all(expected["mrr"][m] == 0 and expected["active"][m] for m in free)
    # this customer's own movements: a contraction to $0, no churn
    from localdev.scenarios.truth import _movements

    own = _movements({customer: expected["mrr"]}, {customer: expected["active"]}, months)
    assert own[free[0]]["contraction"] == -expected["mrr"][paid[-1]]
    assert all(own[m]["churn"] == 0 for m in months)


def test_a_cancellation_at_period_end_churns_at_ended_at(account: Account, truth: dict[str, Any]) -> None:
    customer = account.customers_with("cancel_at_period_end")[0]
    sub = _only_subscription(account, customer)
    assert sub["status"] == "canceled" and sub["ended_at"] > sub["canceled_at"]
    cancellations = truth["customers"][customer]["cancellations"]
    assert [c["subscription_external_id"] for c in cancellations] == [sub["items"]["data"][0]["id"]]
    assert cancellations[0]["cancellation_dates"] == [iso(sub["ended_at"])]
    assert truth["customers"][customer]["mrr"]["2026-10"] == 0


def test_a_pending_cancellation_sends_nothing_yet(account: Account, truth: dict[str, Any]) -> None:
    customer = account.customers_with("cancel_pending")[0]
    assert _only_subscription(account, customer)["cancel_at_period_end"] is True
    assert truth["customers"][customer]["cancellations"] == []
    assert truth["customers"][customer]["mrr"]["2026-10"] > 0


def test_deleted_customers_keep_their_history_with_a_tag(account: Account, truth: dict[str, Any]) -> None:
    for profile in ("deleted_customer", "deleted_customer_recent"):
        for customer in account.customers_with(profile):
            expected = truth["customers"][customer]
            assert expected["customer"]["attributes"]["tags"] == ["deleted-in-stripe"]
            assert expected["invoices"] and expected["cancellations"]
            assert expected["mrr"]["2026-10"] == 0
            # Mapping 1.1.0 scrubs a deleted customer's personal data (long-deleted ones are only an id anyway).
            assert not expected["customer"]["email"] and not expected["customer"]["name"]
            # a recent deletion's event still has the creation date; a long-deleted customer's is gone
            assert ("lead_created_at" in expected["customer"]) == (profile == "deleted_customer_recent")


def test_refunds_and_failed_attempts_are_transactions(account: Account, truth: dict[str, Any]) -> None:
    refunds = {
        t["external_id"]: t
        for c in truth["customers"].values()
        for invoice in c["invoices"]
        for t in invoice["transactions"]
        if t["type"] == "refund"
    }
    assert set(refunds) == {refund.id for refund in account.store.refunds.values()}
    failed = {
        t["external_id"]
        for c in truth["customers"].values()
        for invoice in c["invoices"]
        for t in invoice["transactions"]
        if t["result"] == "failed"
    }
    imported = {i["external_id"] for c in truth["customers"].values() for i in c["invoices"]}
    assert failed
    for charge_id in failed:
        charge = account.store.charges.get(charge_id)
        assert charge is not None and not charge.succeeded
        payments = account.store.invoice_payments.indexed("payment_intent", charge.payment_intent) or []
        assert payments[0].invoice in imported


def test_a_coupon_lowers_mrr_only_while_it_applies(account: Account, truth: dict[str, Any]) -> None:
    customer = account.customers_with("coupon_repeating")[0]
    mrr = truth["customers"][customer]["mrr"]
    values = [value for value in mrr.values() if value > 0]
    assert values[0] == round(values[-1] * 0.75)  # 25 % off for three months, then the full price
