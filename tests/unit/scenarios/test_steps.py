"""Scenario steps after a backfill: each change emits Stripe's events and moves the ground truth."""

from __future__ import annotations

import pytest

from localdev.scenarios import Account, generate_account
from localdev.stripe_emulator.render import render


@pytest.fixture
def account() -> Account:
    account = generate_account(customers=60, months=12, seed=21)
    account.apply_step({"kind": "advance", "days": 3})  # into a new month, so the step's month is in the truth
    return account


def _types(result: dict[str, object]) -> list[str]:
    events = result["events"]
    assert isinstance(events, list)
    return [event["type"] for event in events]


def _running_monthly(account: Account, *plans: str) -> str:
    for customer in account.customers_with("monthly"):
        sub = next(s for s in account.store.subscriptions.values() if s.customer == customer)
        price = account.store.prices.get(account.store.subscription_items.get(sub.items[0]).history[-1].price)  # type: ignore[union-attr]
        product = account.store.products.get(price.product)  # type: ignore[union-attr]
        if sub.status == "active" and product is not None and product.name in plans:
            return customer
    raise AssertionError(f"no active monthly customer on {plans}")


def test_advance_renews_and_the_truth_gains_the_month(account: Account) -> None:
    truth = account.ground_truth()
    assert truth["months"][-1] == "2026-11"
    before = len(account.store.invoices)
    result = account.apply_step({"kind": "advance", "days": 31})
    assert len(account.store.invoices) > before
    assert "invoice.paid" in _types(result)
    assert account.ground_truth()["months"][-1] == "2026-12"


def test_upgrade_invoices_prorations_now_and_raises_mrr(account: Account) -> None:
    customer = _running_monthly(account, "Starter", "Pro")
    mrr_before = account.ground_truth()["customers"][customer]["mrr"]["2026-11"]
    result = account.apply_step({"kind": "upgrade", "customer": customer})
    types = _types(result)
    assert types[:1] == ["customer.subscription.updated"]
    assert {"invoiceitem.created", "invoice.created", "invoice.finalized", "invoice.paid"} <= set(types)
    truth = account.ground_truth()["customers"][customer]
    assert truth["mrr"]["2026-11"] > mrr_before
    newest = truth["invoices"][-1]
    assert [line["prorated"] for line in newest["line_items"]] == [True, True]


def test_cancel_refund_credit_note_and_delete(account: Account) -> None:
    customer = _running_monthly(account, "Starter", "Pro", "Business")
    refund = account.apply_step({"kind": "refund", "customer": customer, "share": 0.5})
    assert _types(refund) == ["refund.created", "charge.refunded"]
    credit = account.apply_step({"kind": "credit_note", "customer": customer, "share": 0.1})
    assert "credit_note.created" in _types(credit)
    cancel = account.apply_step({"kind": "cancel", "customer": customer})
    assert _types(cancel) == ["customer.subscription.deleted"]
    truth = account.ground_truth()["customers"][customer]
    assert truth["cancellations"] and truth["mrr"]["2026-11"] == 0
    refunds = [t for invoice in truth["invoices"] for t in invoice["transactions"] if t["type"] == "refund"]
    assert len(refunds) == 2
    deleted = account.apply_step({"kind": "delete_customer", "customer": customer})
    assert _types(deleted) == ["customer.deleted"]
    record = account.store.customers.get(customer)
    assert record is not None and record.deleted_at == account.store.now - 10
    assert render(account.store, "customers", record, account.store.now)["email"]
    assert account.ground_truth()["customers"][customer]["customer"]["attributes"]["tags"] == ["deleted-in-stripe"]


def test_cancel_at_period_end_then_the_period_ends(account: Account) -> None:
    customer = _running_monthly(account, "Starter", "Pro", "Business")
    result = account.apply_step({"kind": "cancel_at_period_end", "customer": customer})
    assert _types(result) == ["customer.subscription.updated"]
    assert account.ground_truth()["customers"][customer]["cancellations"] == []
    ended = account.apply_step({"kind": "advance", "days": 40})
    assert "customer.subscription.deleted" in _types(ended)
    assert account.ground_truth()["customers"][customer]["cancellations"]


def test_new_customer_and_bad_steps(account: Account) -> None:
    result = account.apply_step({"kind": "new_customer", "plan": "Business", "interval": "yearly", "currency": "eur"})
    customer = result["customer"]
    assert isinstance(customer, str) and customer.startswith("cus_")
    assert _types(result)[:2] == ["customer.created", "customer.subscription.created"]
    assert account.ground_truth()["customers"][customer]["mrr"]["2026-11"] == round(99_000 / 12 * 1.10)
    with pytest.raises(ValueError):
        account.apply_step({"kind": "explode"})
    with pytest.raises(KeyError):
        account.apply_step({"kind": "cancel", "customer": "cus_unknown"})
    lead = account.customers_with("lead_only")[0]
    with pytest.raises(ValueError):
        account.apply_step({"kind": "upgrade", "customer": lead})


def test_the_same_steps_give_the_same_account() -> None:
    def run() -> bytes:
        account = generate_account(customers=40, months=10, seed=8)
        account.apply_step({"kind": "advance", "days": 5})
        account.apply_step({"kind": "new_customer"})
        account.apply_step({"kind": "advance", "days": 20})
        return account.dump()

    assert run() == run()
