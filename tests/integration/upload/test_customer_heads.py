"""A backfill's customer heads at the upload (docs/architecture.md "Customer heads"): the customer created alone,
early, and its full bundle then imported in bulk without creating it again, whatever order SQS delivers them in."""

from __future__ import annotations

import datetime as dt

from chartmogul_sync.models import CustomerBundle
from chartmogul_sync.sinks.chartmogul.dlq import list_messages

from ...unit.upload.bundles import customer_bundle, monthly_invoice
from .conftest import chartmogul_state, expected_state, requests_made, upload, writes_made
from .test_bulk_mode import backfill_bundles


def head_of(bundle: CustomerBundle) -> CustomerBundle:
    """The head a backfill sends for the bundle's customer: the customer alone, at the same snapshot time."""
    return CustomerBundle(
        mapping_version=bundle.mapping_version,
        snapshot_time=bundle.snapshot_time,
        customer=bundle.customer,
        customer_only=True,
    )


def test_heads_create_the_customers_and_their_full_bundles_then_import_without_creating_them_again(stack, emulator):
    good, _ = backfill_bundles()
    upload(stack, *(head_of(b) for b in good), mode="bulk")
    # Nothing but the customers (and the data source, which the first upload creates).
    assert writes_made(emulator) == {"POST /v1/data_sources 201": 1, "POST /v1/customers 201": len(good)}
    held = chartmogul_state(emulator)
    assert held["customers"] and not held["invoices"]
    emulator.server.counter.reset()

    upload(stack, *good, mode="bulk")
    writes = writes_made(emulator)
    # The heads' customers are not created again and their history is not imported per object: it went in bulk.
    assert "POST /v1/customers 201" not in writes
    assert "POST /v1/import/customers/{uuid}/invoices 201" not in writes
    assert writes["POST /v1/data_sources/{uuid}/json_imports 201"] == 1
    assert writes["PATCH /v1/import/subscriptions/{uuid} 202"] == 1  # cus_cat's cancellation
    assert "PATCH /v1/customers/{uuid} 200" not in writes  # the heads carried every field and attribute
    assert chartmogul_state(emulator) == expected_state(*good)
    cat = next(c for c in emulator.emulator.store.docs("customers") if c["external_id"] == "cus_cat")
    assert cat["attributes"]["tags"] == ["vip"]


def test_a_head_after_its_full_bundle_writes_nothing(stack, emulator):
    good, _ = backfill_bundles()
    upload(stack, *good, mode="bulk")
    emulator.server.counter.reset()
    upload(stack, *(head_of(b) for b in good), mode="bulk")  # SQS delivered the heads last
    assert requests_made(emulator) == {}
    assert chartmogul_state(emulator) == expected_state(*good)
    upload(stack, *(head_of(b) for b in good), mode="api")
    assert requests_made(emulator) == {}


def test_a_head_beside_its_full_bundle_in_one_batch_costs_nothing_more(stack, emulator):
    good, _ = backfill_bundles()
    upload(stack, *good, *(head_of(b) for b in good), mode="bulk")
    writes = writes_made(emulator)
    with_attributes = [b for b in good if b.customer.attributes.custom or b.customer.attributes.tags]
    assert writes["POST /v1/customers 201"] == len(with_attributes)  # once each, as without heads
    assert chartmogul_state(emulator) == expected_state(*good)


def test_a_field_only_the_full_bundle_knows_is_added_by_one_update(stack, emulator):
    """The customers list does not say when a customer's trial began (its subscriptions do): the head creates the
    customer without it, and the full bundle's pass after the import sets it."""
    good, _ = backfill_bundles()
    trial = dt.datetime(2024, 12, 24, tzinfo=dt.UTC)
    full = [
        b.model_copy(update={"customer": b.customer.model_copy(update={"free_trial_started_at": trial})}) for b in good
    ]
    heads = [head_of(b) for b in good]  # as the export sends them: no trial yet
    upload(stack, *heads, mode="bulk")
    emulator.server.counter.reset()
    upload(stack, *full, mode="bulk")
    writes = writes_made(emulator)
    assert writes["PATCH /v1/customers/{uuid} 200"] == len(full)
    assert "POST /v1/import/customers/{uuid}/invoices 201" not in writes
    for doc in emulator.emulator.store.docs("customers"):
        assert doc["free_trial_started_at"].startswith("2024-12-24"), doc["external_id"]


def test_a_head_chartmogul_refuses_leaves_the_reason_to_its_full_bundle_once(stack, emulator):
    """A head is a head start, never the record: one that fails is logged and dropped; the full bundle fails the
    same way and reaches the bad records with ChartMogul's reason, once."""
    good, _ = backfill_bundles()
    refused = good[0]
    # ChartMogul holds the attribute `channel` as a number already: a create that sends it as text is refused.
    emulator.emulator.store.insert("custom_attributes", {"key": "channel", "type": "Integer"}, key="channel")
    upload(stack, head_of(refused), mode="bulk")
    assert requests_made(emulator)["POST /v1/customers 422"] == 1
    assert list_messages(stack.clients.sqs, stack.queue_url("BadRecordsQueue")) == []
    assert stack.receive_all("UploadDeadLetterQueue") == []
    upload(stack, refused, mode="bulk")
    bad = [m.bad_record for m in list_messages(stack.clients.sqs, stack.queue_url("BadRecordsQueue"))]
    assert len(bad) == 1 and bad[0] is not None and bad[0].customer_external_id == "cus_ann"
    assert "channel" in bad[0].reason


def test_a_customer_with_history_in_chartmogul_is_applied_per_object_after_its_head(stack, emulator):
    """A head of a customer ChartMogul already holds with invoices writes nothing; its full bundle is a diff."""
    first = [monthly_invoice("cus_ann", m) for m in (1, 2)]
    good, _ = backfill_bundles()
    ann = good[0]
    upload(stack, ann.model_copy(update={"invoices": first}))
    emulator.server.counter.reset()
    upload(stack, head_of(ann), ann, mode="bulk")
    writes = writes_made(emulator)
    assert "POST /v1/customers 201" not in writes
    assert writes["POST /v1/import/customers/{uuid}/invoices 201"] == 1  # the months ChartMogul lacked
    assert chartmogul_state(emulator) == expected_state(ann)


def test_a_customer_deleted_in_stripe_before_chartmogul_ever_held_it_is_not_imported(stack, emulator):
    """Deleted in Stripe (the mapping's `deleted_customers: delete`) and unknown to ChartMogul: nothing to import,
    nothing to create, in a bulk batch as in api mode."""
    good, _ = backfill_bundles()
    gone = good[0].model_copy(update={"deleted_in_source": True, "invoices": [], "plans": []})
    upload(stack, gone, mode="bulk")
    assert writes_made(emulator) == {"POST /v1/data_sources 201": 1}
    assert chartmogul_state(emulator)["customers"] == []


def test_a_head_without_tags_or_custom_attributes_leaves_its_customer_to_the_import(stack, emulator):
    """The bulk format creates a customer it can carry whole in the same request as its history: a head of one
    would cost a request the import saves, so in bulk mode it writes nothing (in api mode it creates it)."""
    plain = customer_bundle("cus_eve", months=3, custom_attributes=False)
    assert not (plain.customer.attributes.tags or plain.customer.attributes.custom)
    upload(stack, head_of(plain), mode="bulk")
    assert writes_made(emulator) == {"POST /v1/data_sources 201": 1}
    emulator.server.counter.reset()
    upload(stack, plain, mode="bulk")
    writes = writes_made(emulator)
    assert writes == {"POST /v1/data_sources/{uuid}/json_imports 201": 1}  # the customer came with its invoices
    assert chartmogul_state(emulator) == expected_state(plain)
    upload(stack, head_of(customer_bundle("cus_fay", months=1, custom_attributes=False)), mode="api")
    assert writes_made(emulator)["POST /v1/customers 201"] == 1
