"""One assembly for both export paths: what goes into a customer's snapshot, in a fixed order."""

import itertools
import random
from typing import Any

import pytest

from chartmogul_sync.sources.stripe.backfill import BackfillRange, partition_of
from chartmogul_sync.sources.stripe.client import StripeList
from chartmogul_sync.sources.stripe.snapshots import Catalog, CustomerRecords, assemble_snapshot


def listed(object_type: str, object_id: str, created: int, **fields: Any) -> dict[str, Any]:
    return {"id": object_id, "object": object_type, "created": created, **fields}


def line(line_id: str, price_id: str) -> dict[str, Any]:
    return {"id": line_id, "object": "line_item", "pricing": {"price_details": {"price": price_id, "product": "p"}}}


def invoice(invoice_id: str, created: int, status: str, *, lines: list[str], payments: list[str]) -> dict[str, Any]:
    return listed(
        "invoice",
        invoice_id,
        created,
        customer="cus_1",
        status=status,
        lines={"object": "list", "data": [line(i, "price_monthly") for i in lines], "has_more": False},
        payments={
            "object": "list",
            "data": [listed("invoice_payment", p, created, invoice=invoice_id) for p in payments],
            "has_more": False,
        },
    )


def account_objects() -> list[tuple[StripeList, dict[str, Any]]]:
    subscription_items = [{"id": "si_1", "price": {"id": "price_yearly", "product": "prod_pro"}}]
    return [
        (StripeList.CUSTOMERS, listed("customer", "cus_1", 10, email="a@example.com")),
        (
            StripeList.SUBSCRIPTIONS,
            listed("subscription", "sub_1", 20, customer="cus_1", items={"data": subscription_items}),
        ),
        (StripeList.INVOICES, invoice("in_2", 40, "paid", lines=["il_3"], payments=["inpay_2"])),
        (StripeList.INVOICES, invoice("in_1", 30, "paid", lines=["il_1", "il_2"], payments=["inpay_1"])),
        (StripeList.INVOICES, invoice("in_draft", 50, "draft", lines=["il_9"], payments=[])),
        (
            StripeList.CHARGES,
            listed(
                "charge",
                "ch_1",
                31,
                customer="cus_1",
                amount_refunded=500,
                refunds={"object": "list", "data": [listed("refund", "re_1", 35, charge="ch_1")], "has_more": False},
            ),
        ),
        (StripeList.CHARGES, listed("charge", "ch_0", 29, customer="cus_1", amount_refunded=0)),
        (StripeList.INVOICE_ITEMS, listed("invoiceitem", "ii_1", 25, customer="cus_1")),
        (StripeList.CREDIT_NOTES, listed("credit_note", "cn_1", 36, customer="cus_1")),
    ]


def catalog() -> Catalog:
    found = Catalog(api=None)
    for price_id, product_id in [
        ("price_monthly", "prod_pro"),
        ("price_yearly", "prod_pro"),
        ("price_other", "prod_x"),
    ]:
        found.add(StripeList.PRICES, listed("price", price_id, 1, product=product_id))
    for product_id in ("prod_pro", "prod_x"):
        found.add(StripeList.PRODUCTS, listed("product", product_id, 1))
    return found


def records_from(objects: list[tuple[StripeList, dict[str, Any]]]) -> CustomerRecords:
    records = CustomerRecords("cus_1")
    for resource, obj in objects:
        records.add(resource, obj)
    return records


def test_a_snapshot_holds_issued_invoices_with_payments_and_refunds_taken_out_of_their_parents() -> None:
    snapshot = assemble_snapshot(records_from(account_objects()), catalog())

    assert snapshot.customer_id == "cus_1" and not snapshot.deleted
    assert [i["id"] for i in snapshot.invoices] == ["in_1", "in_2"]  # the draft is not issued: left out
    assert all("payments" not in i for i in snapshot.invoices)
    assert [p["id"] for p in snapshot.invoice_payments] == ["inpay_1", "inpay_2"]
    assert [c["id"] for c in snapshot.charges] == ["ch_0", "ch_1"]
    assert all("refunds" not in c for c in snapshot.charges)
    assert [r["id"] for r in snapshot.refunds] == ["re_1"]
    assert [i["id"] for i in snapshot.invoice_items] == ["ii_1"]
    assert [n["id"] for n in snapshot.credit_notes] == ["cn_1"]


def test_a_snapshot_carries_exactly_the_prices_and_products_it_references() -> None:
    snapshot = assemble_snapshot(records_from(account_objects()), catalog())

    assert [p["id"] for p in snapshot.prices] == ["price_monthly", "price_yearly"]
    assert [p["id"] for p in snapshot.products] == ["prod_pro"]


def test_the_snapshot_does_not_depend_on_the_order_objects_arrive_in_nor_on_duplicates() -> None:
    objects = account_objects()
    expected = assemble_snapshot(records_from(objects), catalog()).model_dump_json()
    shuffler = random.Random(7)
    for _ in range(20):
        shuffled = objects + shuffler.sample(objects, k=3)  # a page staged twice after a crash
        shuffler.shuffle(shuffled)
        assert assemble_snapshot(records_from(shuffled), catalog()).model_dump_json() == expected


def test_a_deleted_customer_snapshot_says_so_and_keeps_what_was_last_known() -> None:
    records = CustomerRecords("cus_1")
    records.set_customer(
        {"id": "cus_1", "object": "customer", "deleted": True},
        last_known={"id": "cus_1", "object": "customer", "email": "a@example.com", "created": 10},
    )

    snapshot = assemble_snapshot(records, catalog())

    assert snapshot.deleted is True
    assert snapshot.customer == {
        "id": "cus_1",
        "object": "customer",
        "email": "a@example.com",
        "created": 10,
        "deleted": True,
    }


def test_records_without_a_customer_object_cannot_become_a_snapshot() -> None:
    records = CustomerRecords("cus_404")
    records.add(StripeList.CREDIT_NOTES, listed("credit_note", "cn_1", 36, customer="cus_404"))

    with pytest.raises(ValueError, match="customer cus_404: no customer object"):
        assemble_snapshot(records, catalog())


def test_catalog_objects_are_not_customer_records() -> None:
    with pytest.raises(ValueError, match="prices objects do not belong to a customer"):
        CustomerRecords("cus_1").add(StripeList.PRICES, listed("price", "price_1", 1))


def test_partitions_are_stable_and_spread_customers_evenly() -> None:
    ids = [f"cus_{n:08d}" for n in range(4000)]
    counts = [0] * 40
    for customer_id in ids:
        counts[partition_of(customer_id, 40)] += 1

    assert partition_of("cus_abc", 40) == partition_of("cus_abc", 40)
    assert min(counts) > 60 and max(counts) < 140  # 100 per partition on average


def test_a_backfill_range_lists_customers_in_the_range_and_their_objects_since_its_start() -> None:
    from datetime import date

    bounded = BackfillRange(created_from=date(2023, 1, 1), created_to=date(2024, 1, 1))

    assert bounded.customer_filter() == {"created": {"gte": 1672531200, "lt": 1704067200}}
    assert bounded.owned_filter() == {"created": {"gte": 1672531200}}
    assert BackfillRange().customer_filter() == {} and BackfillRange().owned_filter() == {}


def test_every_permutation_of_three_invoices_sorts_the_same() -> None:
    invoices = [invoice(f"in_{n}", created, "paid", lines=[], payments=[]) for n, created in [(1, 5), (2, 5), (3, 1)]]
    orders = set()
    for permutation in itertools.permutations(invoices):
        records = CustomerRecords("cus_1")
        records.set_customer(listed("customer", "cus_1", 1))
        for obj in permutation:
            records.add(StripeList.INVOICES, obj)
        orders.add(tuple(i["id"] for i in assemble_snapshot(records, catalog()).invoices))

    assert orders == {("in_3", "in_1", "in_2")}
