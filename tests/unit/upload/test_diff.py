"""The diff between a bundle and what ChartMogul holds: pure, no mocks (sinks/chartmogul/apply.py)."""

import datetime as dt

from chartmogul_sync.models import Cancellation
from chartmogul_sync.sinks.chartmogul.apply import (
    KnownCustomer,
    KnownPlan,
    KnownSubscription,
    bundle_digest,
    cancellation_dates,
    customer_fields,
    customer_patch_payload,
    invoice_payload,
    plan_fields,
    plan_writes,
)

from .bundles import PRO_MONTHLY, PRO_YEARLY, cancellation_event, customer_bundle, monthly_invoice

CANCELLED = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)


def everything_known(bundle, *, cancellations=None, fields=None) -> tuple[KnownCustomer, dict[str, KnownPlan]]:
    """What the id map holds once `bundle` was applied in full."""
    known = KnownCustomer(
        exists=True,
        uuid="cus_uuid",
        fields=fields if fields is not None else customer_fields(bundle.customer),
        invoices={i.external_id: f"inv_{i.external_id}" for i in bundle.invoices},
        transactions=frozenset(t.external_id for i in bundle.invoices for t in i.transactions),
        subscriptions={
            ext: KnownSubscription(uuid=f"sub_{ext}", cancellation_dates=(cancellations or {}).get(ext))
            for ext in bundle.subscription_external_ids()
        },
        events=frozenset(e.external_id for e in bundle.subscription_events),
    )
    plans = {p.external_id: KnownPlan(uuid=f"pl_{p.external_id}", fields=plan_fields(p)) for p in bundle.plans}
    return known, plans


def test_a_new_customer_needs_its_plans_the_customer_and_one_request_for_all_invoices():
    bundle = customer_bundle(months=12)
    writes = plan_writes(bundle, KnownCustomer(), {})
    assert [p.external_id for p in writes.plans_to_create] == ["price_pro_m"]
    assert writes.customer_to_create == bundle.customer
    assert [i.external_id for i in writes.invoices_to_create] == [i.external_id for i in bundle.invoices]
    # payments travel inline with their invoices: none is added separately
    assert writes.transactions_to_add == ()
    assert writes.write_count == 3  # plan, customer, one invoice import


def test_a_bundle_already_applied_needs_no_write():
    bundle = customer_bundle(months=6, events=[cancellation_event("cus_alice", CANCELLED)])
    known, plans = everything_known(bundle)
    writes = plan_writes(bundle, known, plans)
    assert writes.is_empty
    assert writes.write_count == 0


def test_a_new_invoice_is_the_only_write():
    before = customer_bundle(months=3)
    known, plans = everything_known(before)
    after = customer_bundle(months=4)
    writes = plan_writes(after, known, plans)
    assert [i.external_id for i in writes.invoices_to_create] == ["in_cus_alice_04"]
    assert writes.write_count == 1


def test_a_refund_on_an_imported_invoice_is_added_as_a_transaction():
    before = customer_bundle(months=2)
    known, plans = everything_known(before)
    refunded = [monthly_invoice("cus_alice", 1), monthly_invoice("cus_alice", 2, refund=1000)]
    writes = plan_writes(customer_bundle(invoices=refunded), known, plans)
    assert [(inv, t.external_id, t.amount_in_cents) for inv, t in writes.transactions_to_add] == [
        ("in_cus_alice_02", "re_cus_alice_02", 1000)
    ]
    assert writes.invoices_to_create == ()
    assert writes.write_count == 1


def test_a_changed_customer_field_is_patched_alone():
    before = customer_bundle()
    known, plans = everything_known(before)
    writes = plan_writes(customer_bundle(email="alice@new.example"), known, plans)
    assert writes.customer_changes == {"email": "alice@new.example"}
    assert writes.customer_to_create is None
    assert writes.write_count == 1


def test_a_customer_whose_fields_are_unknown_gets_them_all_once():
    bundle = customer_bundle()
    known, plans = everything_known(bundle)
    known = KnownCustomer(**{**known.__dict__, "fields": None})
    writes = plan_writes(bundle, known, plans)
    assert writes.customer_changes["email"] == "alice@example.com"
    assert writes.customer_changes["country"] == "DE"
    assert "zip" not in writes.customer_changes  # nothing to clear that was never sent


def test_new_tags_patch_the_attributes_in_the_patch_shape():
    before = customer_bundle()
    known, plans = everything_known(before)
    writes = plan_writes(customer_bundle(tags=["deleted-in-stripe"]), known, plans)
    assert set(writes.customer_changes) == {"attributes"}
    # docs/sources.md#cm-customers: PATCH takes custom attributes as a key → value map
    assert customer_patch_payload(writes.customer_changes) == {
        "attributes": {"tags": ["deleted-in-stripe"], "custom": {"channel": "partner"}}
    }


def test_a_cancellation_is_set_once():
    bundle = customer_bundle(cancelled_at=CANCELLED)
    known, plans = everything_known(customer_bundle())
    writes = plan_writes(bundle, known, plans)
    assert [(c.subscription_external_id, cancellation_dates(c)) for c in writes.cancellations_to_set] == [
        ("si_cus_alice", ("2025-04-01T00:00:00Z",))
    ]
    known_after, _ = everything_known(bundle, cancellations={"si_cus_alice": ("2025-04-01T00:00:00Z",)})
    assert plan_writes(bundle, known_after, plans).is_empty


def test_a_reactivated_subscription_has_its_cancellation_removed():
    known, plans = everything_known(customer_bundle(), cancellations={"si_cus_alice": ("2025-04-01T00:00:00Z",)})
    writes = plan_writes(customer_bundle(), known, plans)
    assert writes.cancellations_to_set == (
        Cancellation(subscription_external_id="si_cus_alice", cancellation_dates=[]),
    )


def test_a_cancelled_subscription_the_bundle_no_longer_bills_is_left_alone():
    known, plans = everything_known(customer_bundle(), cancellations={"si_cus_alice": ("2025-04-01T00:00:00Z",)})
    other_item_only = customer_bundle(invoices=[monthly_invoice("cus_bob", 1)])
    assert plan_writes(other_item_only, known, plans).cancellations_to_set == ()


def test_a_voided_invoice_that_was_imported_is_deleted():
    before = customer_bundle(months=3)
    known, plans = everything_known(before)
    after = customer_bundle(invoices=before.invoices[:2], removed=["in_cus_alice_03", "in_never_imported"])
    writes = plan_writes(after, known, plans)
    assert writes.invoices_to_delete == ("in_cus_alice_03",)
    assert writes.write_count == 1


def test_a_renamed_plan_is_updated_and_a_new_plan_created():
    bundle = customer_bundle()
    known, plans = everything_known(bundle)
    renamed = PRO_MONTHLY.model_copy(update={"name": "Pro Plus (monthly)"})
    writes = plan_writes(customer_bundle(plans=[renamed, PRO_YEARLY]), known, plans)
    assert [p.name for p in writes.plans_to_update] == ["Pro Plus (monthly)"]
    assert [p.external_id for p in writes.plans_to_create] == ["price_pro_y"]


def test_only_unknown_subscription_events_are_created():
    event = cancellation_event("cus_alice", CANCELLED)
    known, plans = everything_known(customer_bundle())
    writes = plan_writes(customer_bundle(events=[event]), known, plans)
    assert [e.external_id for e in writes.events_to_create] == ["evt_cus_alice_cancel"]


def test_an_invoice_payload_refers_to_plans_by_uuid_and_keeps_one_off_lines_planless():
    invoice = monthly_invoice("cus_alice", 1, one_off=1500)
    payload = invoice_payload(invoice, {"price_pro_m": "pl_123"}, "cus_alice")
    subscription_line, one_off_line = payload["line_items"]
    assert subscription_line["plan_uuid"] == "pl_123"
    assert "plan_external_id" not in subscription_line
    assert subscription_line["service_period_start"] == "2025-01-01T00:00:00Z"
    assert one_off_line["type"] == "one_time" and "plan_uuid" not in one_off_line
    assert payload["transactions"][0]["amount_in_cents"] == 6400
    assert payload["customer_external_id"] == "cus_alice"


def test_the_digest_changes_with_the_content_only():
    assert bundle_digest(customer_bundle()) == bundle_digest(customer_bundle())
    assert bundle_digest(customer_bundle()) != bundle_digest(customer_bundle(email="x@example.com"))


def test_a_customer_deleted_in_the_source_is_deleted_once_and_nothing_else_written():
    bundle = customer_bundle(invoices=[]).model_copy(update={"deleted_in_source": True})
    known, plans = everything_known(customer_bundle())
    writes = plan_writes(bundle, known, plans)
    assert writes.customer_to_delete and writes.write_count == 1
    assert plan_writes(bundle, KnownCustomer(deleted=True), plans).is_empty
