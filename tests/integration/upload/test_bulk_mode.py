"""Upload mode `bulk`: a batch of first imports through `json_imports`, polled to completion, per-customer outcomes."""

from __future__ import annotations

import datetime as dt
import json

from chartmogul_sync.sinks.chartmogul.dlq import list_messages
from localdev.aws.runtime import local_stack

from ...unit.upload.bundles import SNAPSHOT_TIME, customer_bundle, monthly_invoice
from .conftest import FAST, chartmogul_state, expected_state, requests_made, stack_environment, upload, writes_made

CANCELLED = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
LATER = SNAPSHOT_TIME + dt.timedelta(days=1)


def backfill_bundles():
    plain = [customer_bundle(f"cus_{n}", months=6) for n in ("ann", "ben")]
    with_extras = customer_bundle("cus_cat", months=5, cancelled_at=CANCELLED, tags=["vip"])
    # ChartMogul does not accept every ISO currency (the emulator lacks XCG, new in 2025): this customer fails.
    invoice = monthly_invoice("cus_dan", 1).model_copy(update={"currency": "XCG"})
    unsupported = customer_bundle("cus_dan", invoices=[invoice])
    return [*plain, with_extras], unsupported


def test_a_backfill_batch_is_one_bulk_import_with_per_customer_outcomes(stack, emulator):
    good, bad = backfill_bundles()
    upload(stack, *good, bad, mode="bulk")

    counts = requests_made(emulator)
    assert counts["POST /v1/data_sources/{uuid}/json_imports 201"] == 1
    assert counts.get("GET /v1/data_sources/{uuid}/json_imports/{id} 200", 0) >= 1  # polled until completed
    # No per-object import: the invoices all went in bulk. What the bulk format cannot carry (custom attributes and
    # tags, docs/sources.md#cm-bulk-import) came with the customers created through the API just before, one request
    # each, which also taught their uuids: no lookup, no update after the import. cus_cat's cancellation followed.
    assert "POST /v1/import/customers/{uuid}/invoices 201" not in counts
    with_attributes = [b for b in (*good, bad) if b.customer.attributes.custom or b.customer.attributes.tags]
    assert counts["POST /v1/customers 201"] == len(with_attributes) > 0
    assert "PATCH /v1/customers/{uuid} 200" not in counts
    assert "GET /v1/customers 200" not in counts
    assert counts["PATCH /v1/import/subscriptions/{uuid} 202"] == 1
    # cus_dan's records were refused, but it was created first for its attributes: it stays, with nothing else,
    # as in api mode (a customer, then its refused invoices), and a replay after a fix applies it per object.
    held = chartmogul_state(emulator)
    assert ("cus_dan", "dan@example.com", "Dan") in held["customers"]
    held["customers"].remove(("cus_dan", "dan@example.com", "Dan"))
    assert held == expected_state(*good)
    cat = next(c for c in emulator.emulator.store.docs("customers") if c["external_id"] == "cus_cat")
    assert cat["attributes"]["tags"] == ["vip"]

    bad_records = [m.bad_record for m in list_messages(stack.clients.sqs, stack.queue_url("BadRecordsQueue"))]
    assert len(bad_records) == 1 and bad_records[0] is not None
    assert bad_records[0].customer_external_id == "cus_dan"
    assert "currency" in (bad_records[0].error_body or "")
    assert json.loads(bad_records[0].original_body)["customer_external_id"] == "cus_dan"
    assert stack.receive_all("UploadDeadLetterQueue") == []


def test_a_bulk_imported_customer_is_then_kept_in_sync_per_object(stack, emulator):
    good, _ = backfill_bundles()
    upload(stack, *good, mode="bulk")
    emulator.server.counter.reset()
    upload(stack, *good, mode="bulk")
    assert requests_made(emulator) == {}  # the same bundles again: nothing to do, not even a lookup

    newer = customer_bundle("cus_ann", months=7, snapshot_time=LATER)
    upload(stack, newer)  # an incremental sync, api mode
    assert writes_made(emulator) == {"POST /v1/import/customers/{uuid}/invoices 201": 1}
    assert chartmogul_state(emulator) == expected_state(newer, *good[1:])


def test_bulk_mode_can_be_the_configured_default(emulator):
    with local_stack(options=FAST, environment=stack_environment(emulator, UPLOAD_MODE="bulk")) as stack:
        stack.put_secret_value("ChartMogulApiKeySecret", emulator.api_key)
        good, _ = backfill_bundles()
        upload(stack, *good)
        counts = requests_made(emulator)
        assert counts["POST /v1/data_sources/{uuid}/json_imports 201"] == 1
        assert chartmogul_state(emulator) == expected_state(*good)


def test_a_customer_already_in_chartmogul_is_applied_per_object_in_a_bulk_batch(stack, emulator):
    existing = customer_bundle("cus_ann", months=2)
    upload(stack, existing)
    emulator.server.counter.reset()
    good, _ = backfill_bundles()
    upload(stack, *good, mode="bulk")
    counts = writes_made(emulator)
    assert counts["POST /v1/data_sources/{uuid}/json_imports 201"] == 1
    assert counts["POST /v1/import/customers/{uuid}/invoices 201"] == 1  # cus_ann's four new months
    assert chartmogul_state(emulator) == expected_state(*good)


def test_a_customer_an_earlier_create_left_without_invoices_still_goes_in_the_import(stack, emulator):
    """A create that timed out after ChartMogul took it (the retry answers 422) leaves the customer alone, with no
    invoice and no id map entry: its records still go in bulk, not invoice by invoice."""
    import chartmogul

    from chartmogul_sync.sinks.chartmogul.apply import customer_create_payload

    good, _ = backfill_bundles()
    ann, *others = good
    upload(stack, *others, mode="bulk")
    data_source = emulator.emulator.store.docs("data_sources")[0]["uuid"]
    chartmogul.Customer.create(emulator.client_config(), data=customer_create_payload(ann.customer, data_source)).get()
    emulator.server.counter.reset()

    upload(stack, ann, mode="bulk")
    counts = requests_made(emulator)
    assert counts["POST /v1/customers 422"] == 1  # ChartMogul holds it: relearned (a lookup, its invoices: none)
    assert counts["POST /v1/data_sources/{uuid}/json_imports 201"] == 1
    assert "POST /v1/import/customers/{uuid}/invoices 201" not in counts
    assert chartmogul_state(emulator) == expected_state(*good)


def test_an_import_unfinished_within_the_time_budget_is_retried_without_duplicates(monkeypatch):

    from moto import mock_aws

    from chartmogul_sync.sinks.chartmogul.bulk import BulkUploader
    from chartmogul_sync.sinks.chartmogul.client import ChartMogulError, TimeBudget
    from chartmogul_sync.sinks.chartmogul.uploader import ApplyResult
    from localdev.chartmogul_emulator import start

    from .conftest import EMULATOR_NOW, direct_uploader

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    good, _ = backfill_bundles()
    # The import stays in `processing` until the test lets it finish: no race with the wall clock.
    with mock_aws(), start(now=EMULATOR_NOW, bulk_queued_seconds=0.1, bulk_processing_seconds=3600) as emulator:
        uploader, api = direct_uploader(emulator)
        bulk = BulkUploader(api, uploader)
        first = bulk.apply_many(good, TimeBudget.seconds(5.8))  # gives up polling <1 s in, before the import ends
        assert all(isinstance(o, ChartMogulError) and "still processing" in str(o) for o in first)
        emulator.options.bulk_processing_seconds = 0  # the import finishes; SQS redelivers the records later
        second = bulk.apply_many(good, TimeBudget.seconds(60))
        assert all(isinstance(o, ApplyResult) for o in second), second
        assert chartmogul_state(emulator) == expected_state(*good)


def _imports(emulator) -> list[dict]:
    return emulator.emulator.store.docs("json_imports")


def _wait_for(condition, seconds: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded: the emulator runs in this process, on loopback
        if condition():
            return True
        time.sleep(0.05)
    return False


def _bulk_in_background(emulator, bundles, *, known_first=None):
    """Apply `bundles` with a BulkUploader in a thread (after `known_first`, applied per object); returns
    (thread, outcomes list filled when it ends). Call inside `moto.mock_aws()`."""
    import threading

    from chartmogul_sync.sinks.chartmogul.bulk import BulkUploader
    from chartmogul_sync.sinks.chartmogul.client import TimeBudget

    from .conftest import direct_uploader

    uploader, api = direct_uploader(emulator)
    if known_first is not None:
        uploader.apply(known_first, TimeBudget.seconds(30))
    outcomes: list = []
    thread = threading.Thread(
        target=lambda: outcomes.extend(BulkUploader(api, uploader).apply_many(bundles, TimeBudget.seconds(120)))
    )
    thread.start()
    return thread, outcomes


def test_a_large_batch_is_imported_in_chunks_whose_imports_overlap(monkeypatch):
    """While ChartMogul processes one chunk's import, the next chunk is sent: the instance keeps sending instead of
    waiting, and each import still holds at least ChartMogul's recommended 100 customers."""
    from moto import mock_aws

    from chartmogul_sync.sinks.chartmogul.uploader import ApplyResult
    from localdev.chartmogul_emulator import start

    from .conftest import EMULATOR_NOW

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bundles = [customer_bundle(f"cus_{n:03d}", months=1) for n in range(200)]
    # Imports stay `processing` until the test lets them finish: no race with the wall clock.
    with mock_aws(), start(now=EMULATOR_NOW, bulk_queued_seconds=0.05, bulk_processing_seconds=3600) as emulator:
        known = customer_bundle("cus_known", months=1)  # its plan is the batch's: ChartMogul holds it already
        thread, outcomes = _bulk_in_background(emulator, bundles, known_first=known)
        both_sent = _wait_for(lambda: len(_imports(emulator)) == 2)
        unfinished = [i["status"] for i in _imports(emulator)]
        emulator.options.bulk_processing_seconds = 0
        thread.join(timeout=120)
        assert both_sent and "completed" not in unfinished  # the second import went while the first was processing
        assert sorted(len(i["status_details"]) for i in _imports(emulator)) == [100, 100]
        assert all(isinstance(o, ApplyResult) for o in outcomes) and len(outcomes) == 200
        assert chartmogul_state(emulator) == expected_state(known, *bundles)


def test_a_chunk_needing_a_plan_another_import_creates_waits_for_that_import(monkeypatch):
    """The plan goes in the first import only; the next chunk's import, which needs it, is sent once that import has
    finished (ChartMogul promises no order between imports)."""
    from moto import mock_aws

    from chartmogul_sync.sinks.chartmogul.uploader import ApplyResult
    from localdev.chartmogul_emulator import start

    from .conftest import EMULATOR_NOW

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bundles = [customer_bundle(f"cus_{n:03d}", months=1) for n in range(200)]
    with mock_aws(), start(now=EMULATOR_NOW, bulk_queued_seconds=0.05, bulk_processing_seconds=3600) as emulator:
        thread, outcomes = _bulk_in_background(emulator, bundles)
        assert _wait_for(lambda: len(_imports(emulator)) == 1)
        # Long enough for the second chunk's POST, were it sent without waiting (it comes within seconds here).
        second_sent_early = _wait_for(lambda: len(_imports(emulator)) == 2, seconds=8.0)
        emulator.options.bulk_processing_seconds = 0
        thread.join(timeout=120)
        assert not second_sent_early
        assert len(_imports(emulator)) == 2
        assert sorted("plans" in i["status_details"] for i in _imports(emulator)) == [False, True]
        assert all(isinstance(o, ApplyResult) for o in outcomes) and len(outcomes) == 200
        assert chartmogul_state(emulator) == expected_state(*bundles)


def test_a_chunk_waiting_for_a_plan_goes_once_that_import_finished_not_after_its_customers_api_pass(monkeypatch):
    """The wait for a plan ends with the import that creates it: the cancellations of that import's customers,
    which follow it through the API, run beside the next chunk's import instead of before it (measured in slow
    motion: chunks waited seconds each for those passes)."""
    from moto import mock_aws

    from chartmogul_sync.sinks.chartmogul.uploader import ApplyResult
    from localdev.chartmogul_emulator import start

    from .conftest import EMULATOR_NOW

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # The first chunk's customers each have a cancellation to set after their import (two requests each); the
    # second chunk's need the plan the first import creates.
    cancelled = [customer_bundle(f"cus_{n:03d}", months=5, cancelled_at=CANCELLED) for n in range(100)]
    plain = [customer_bundle(f"cus_{n:03d}", months=1) for n in range(100, 200)]
    patch = "PATCH /v1/import/subscriptions/{uuid} 202"
    with mock_aws(), start(now=EMULATOR_NOW, bulk_queued_seconds=0.05, bulk_processing_seconds=3600) as emulator:
        thread, outcomes = _bulk_in_background(emulator, [*cancelled, *plain])
        assert _wait_for(lambda: len(_imports(emulator)) == 1)
        emulator.options.latency_ms = 300  # the API pass of the first chunk takes seconds from here
        emulator.options.bulk_processing_seconds = 0
        assert _wait_for(lambda: len(_imports(emulator)) == 2)
        cancellations_before_second_import = requests_made(emulator).get(patch, 0)
        emulator.options.latency_ms = 0
        thread.join(timeout=120)
        assert cancellations_before_second_import < len(cancelled)
        assert requests_made(emulator)[patch] == len(cancelled)
        assert all(isinstance(o, ApplyResult) for o in outcomes) and len(outcomes) == 200
        assert chartmogul_state(emulator) == expected_state(*cancelled, *plain)
