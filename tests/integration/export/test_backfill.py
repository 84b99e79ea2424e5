"""Backfill through the export function: every type listed globally, 100 per page, staged in S3 by customer,
and each customer's snapshot the same as fetching that customer directly."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from chartmogul_sync.queues import BadRecord
from chartmogul_sync.sources.stripe.client import RetryPolicy
from chartmogul_sync.sources.stripe.run import ExportLimits
from chartmogul_sync.sources.stripe.windows import MIN_WINDOW_PAGES, STRIPE_EPOCH
from chartmogul_sync.sources.stripe.wiring import export_wiring
from localdev.scenarios import Account, generate_account

from .conftest import ExportRig, by_customer, make_rig, serve

# Each invocation gets about a second and a half of its 900 s before it must hand over: continuations are
# exercised many times in one test, and the raw queue is emptied between invocations (moto's SQS slows down
# as a queue grows).
SHORT_INVOCATIONS = ExportLimits(handover_reserve_s=898.5)


def customers_with_history(account: Account) -> list[str]:
    """Every customer a backfill can find: listed ones, and deleted ones through the objects they left."""
    store = account.store
    owners = {s.customer for s in store.subscriptions} | {i.customer for i in store.invoices}
    return sorted(c.id for c in store.customers if c.deleted_at is None or c.id in owners)


# ---------------------------------------------------------------------------- a 2,000-customer account


@pytest.fixture(scope="module")
def large_account() -> Account:
    return generate_account(customers=2000, months=6, seed=21)


@pytest.fixture
def large_rig(large_account: Account, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExportRig]:
    with serve(large_account) as emulator:
        yield from make_rig(emulator, monkeypatch)


def test_a_2000_customer_backfill_yields_the_snapshots_a_direct_fetch_of_each_customer_gives(
    large_rig: ExportRig, large_account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_wiring, "limits", SHORT_INVOCATIONS)

    outcomes = large_rig.run({"mode": "backfill"})

    assert outcomes[-1]["finished"] is True
    assert len(outcomes) > 1, "the run was expected to hand over to continuations"
    sent = Counter(m.customer_external_id for m in large_rig.raw_messages)
    assert max(sent.values()) == 1, "a customer was sent twice"
    assert all(m.upload_mode == "bulk" for m in large_rig.raw_messages)
    expected_ids = customers_with_history(large_account)
    backfilled = by_customer(large_rig.raw_messages)
    assert sorted(backfilled) == expected_ids
    assert sum(1 for m in large_rig.raw_messages if m.payload and m.payload.deleted) > 0  # the account has some

    # Global lists only: each type costs its pages, never a request per customer, continuations included; but a
    # deleted customer's subscriptions, which only `status=canceled` is documented to list, cost one list each.
    # Each list is read in windows side by side, and each window ends on a page that is not full.
    counts = large_account.store.counts()
    listed = large_rig.list_requests()
    deleted = sum(1 for c in large_account.store.customers if c.deleted_at is not None)
    listed["GET /v1/subscriptions"] -= deleted
    now, oldest_customer = large_account.store.now, min(c.created for c in large_account.store.customers)
    for route, collection in [
        ("GET /v1/customers", "customers"),
        ("GET /v1/subscriptions", "subscriptions"),
        ("GET /v1/invoices", "invoices"),
        ("GET /v1/invoiceitems", "invoiceitems"),
        ("GET /v1/charges", "charges"),
        ("GET /v1/credit_notes", "credit_notes"),
        ("GET /v1/refunds", "refunds"),
        ("GET /v1/prices", "prices"),
        ("GET /v1/products", "products"),
    ]:
        pages = math.ceil(counts[collection] / 100)
        allowed = pages + pages // MIN_WINDOW_PAGES + 1
        if collection == "customers":  # where its customers begin is only guessed: an empty window a halving
            allowed += math.ceil(math.log2((now - STRIPE_EPOCH) / (now - oldest_customer)))
        assert listed.get(route, 0) <= allowed, route
    assert large_rig.emulator.server.counter.count("GET /v1/customers/{object_id}", 200) <= deleted

    direct = large_rig.direct_snapshots(expected_ids)
    different = [customer_id for customer_id in expected_ids if backfilled[customer_id] != direct[customer_id]]
    assert different == []


# ---------------------------------------------------------------------------- a small account


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account(customers=120, months=12, seed=11)


def test_a_bounded_backfill_sends_the_customers_created_in_its_range_each_with_its_whole_history(
    rig: ExportRig, account: Account
) -> None:
    start, end = date(2026, 2, 1), date(2026, 6, 1)
    start_s, end_s = (int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) for d in (start, end))
    in_range = sorted(c.id for c in account.store.customers if start_s <= c.created < end_s)
    assert 5 < len(in_range) < len(account.store.customers)  # the range picks some customers, not all

    outcomes = rig.run({"mode": "backfill", "from": start.isoformat(), "to": end.isoformat()})

    assert outcomes[-1]["finished"] is True
    assert {m.upload_mode for m in rig.raw_messages} == {"bulk"}  # a backfill's default
    backfilled = by_customer(rig.raw_messages)
    assert sorted(backfilled) == in_range
    direct = rig.direct_snapshots(in_range)
    assert all(backfilled[customer_id] == direct[customer_id] for customer_id in in_range)


def test_a_bounded_backfill_keeps_customers_created_in_its_range_and_deleted_since(
    rig: ExportRig, account: Account
) -> None:
    """Deleted customers are never listed: one deleted ten days ago (its `customer.deleted` event tells when it was
    created) and one deleted half a year ago (only its objects are left) must still be exported, whole."""
    start, end = date(2025, 11, 20), date(2026, 7, 10)
    start_s, end_s = (int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) for d in (start, end))
    now = account.store.now
    deleted = {
        c.id: now - c.deleted_at for c in account.store.customers if c.deleted_at and start_s <= c.created < end_s
    }
    assert any(ago < 30 * 86_400 for ago in deleted.values()) and any(ago > 90 * 86_400 for ago in deleted.values())
    in_range = sorted(c.id for c in account.store.customers if start_s <= c.created < end_s)
    assert len(in_range) < len(account.store.customers)

    outcomes = rig.run({"mode": "backfill", "from": start.isoformat(), "to": end.isoformat()})

    assert outcomes[-1]["finished"] is True
    backfilled = by_customer(rig.raw_messages)
    assert sorted(backfilled) == in_range
    direct = rig.direct_snapshots(sorted(deleted))
    for customer_id in deleted:
        assert backfilled[customer_id] == direct[customer_id], customer_id
        gone = json.loads(backfilled[customer_id])
        assert gone["deleted"] is True and gone["subscriptions"], customer_id  # churn can be dated: `ended_at`
        assert {s["status"] for s in gone["subscriptions"]} == {"canceled"}


def test_a_backfill_that_crashes_at_random_pages_resumes_to_the_same_result_without_relisting_finished_pages(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clean run first: the result and the pages it takes.
    rig.run({"mode": "backfill", "run_id": "clean"})
    clean = by_customer(rig.raw_messages)
    clean_pages = sum(rig.list_requests().values())
    rig.raw_messages.clear()
    rig.emulator.server.counter.reset()

    # Then the same backfill where any Stripe request fails now and then and nothing retries it: each failure
    # crashes the invocation, and invoking it again (as Lambda retries an asynchronous invocation) resumes.
    # Every page is written to S3 and checkpointed as it is listed (flush_bytes=1), four requests at a time.
    monkeypatch.setattr(export_wiring, "retry_policy", RetryPolicy(max_attempts=1, reserve_s=0.0))
    lanes = 4
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(flush_bytes=1, stripe_lanes=lanes))
    rig.emulator.server.set_faults("500:0.04", seed=5)
    event = {"mode": "backfill", "run_id": "crashing"}
    crashes = 0
    for _ in range(200):
        try:
            outcome = rig.invoke(event)
        except Exception:  # the invocation died: Lambda would retry it with the same event
            crashes += 1
            rig.raw_messages.extend(rig.take_raw_messages())
            continue
        rig.raw_messages.extend(rig.take_raw_messages())
        if outcome["finished"]:
            break
    else:
        pytest.fail("the crashing backfill never finished")

    assert crashes >= 3, "the fault rate was meant to crash the run several times"
    assert by_customer(rig.raw_messages) == clean
    # A crash costs at most the pages in flight, one a lane: finished pages are not listed again.
    assert sum(rig.list_requests().values()) <= clean_pages + crashes * lanes


def test_429_and_500_storms_are_survived_with_nothing_lost(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.emulator.server.set_faults("429:0.15,500:0.1,503:0.05,reset:0.05", seed=9)

    outcomes = rig.run({"mode": "backfill"})

    assert outcomes[-1]["finished"] is True
    storm = rig.emulator.server.counter
    assert storm.total(429) > 0 and storm.total(500) > 0
    assert sum(outcome["invocation"]["stripe_retries"] for outcome in outcomes) > 0
    rig.emulator.server.set_faults("", seed=None)
    expected_ids = customers_with_history(account)
    backfilled = by_customer(rig.raw_messages)
    assert sorted(backfilled) == expected_ids
    direct = rig.direct_snapshots(expected_ids)
    assert all(backfilled[customer_id] == direct[customer_id] for customer_id in expected_ids)


def test_a_backfill_whose_resume_point_was_deleted_in_stripe_restarts_from_its_creation_time(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # One page per invocation, each written and checkpointed: the run stops after every page.
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(handover_reserve_s=900, flush_bytes=1))
    event: dict[str, object] = {"mode": "backfill", "run_id": "resume-point-deleted"}
    checkpoint: dict[str, object] = {}
    for _ in range(100):
        rig.invoke(event)
        event = rig.continuations.pop(0).model_dump(mode="json")
        item = rig.state_item("backfill#resume-point-deleted", "checkpoint")
        assert item is not None
        checkpoint = json.loads(item["checkpoint"]["S"])
        lists = checkpoint.get("lists") or {}
        assert isinstance(lists, dict)
        cursors = [w["starting_after"] for w in lists.get("invoices", {}).get("windows", []) if w["starting_after"]]
        if cursors:
            break
    # Stripe deletes an object the run would resume after (a draft invoice can be deleted, say).
    gone = str(cursors[0])
    invoices = account.store.invoices
    owner = invoices.get(gone).customer  # type: ignore[union-attr]
    del invoices._by_id[gone]
    invoices.invalidate()

    with caplog.at_level("WARNING"):
        outcomes = rig.run(event)

    assert outcomes[-1]["finished"] is True
    assert "restarting the list from its creation time" in caplog.text
    expected_ids = [c for c in customers_with_history(account) if c != owner]
    backfilled = by_customer(rig.take_raw_messages() + rig.raw_messages)
    direct = rig.direct_snapshots(expected_ids)
    assert all(backfilled[customer_id] == direct[customer_id] for customer_id in expected_ids)


def test_a_backfill_asked_for_api_uploads_carries_it_through_its_continuations_to_every_message(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One page or one partition per invocation: the upload mode has to survive the checkpoint.
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(handover_reserve_s=900, customers_per_partition=40))

    outcomes = rig.run({"mode": "backfill", "upload_mode": "api"})

    assert outcomes[-1]["finished"] is True
    assert sum(1 for o in outcomes if o["detail"].get("step_name") == "assemble") > 1
    assert {m.upload_mode for m in rig.raw_messages} == {"api"}
    assert sorted(by_customer(rig.raw_messages)) == customers_with_history(account)


def test_a_backfill_sends_each_listed_customer_alone_before_any_whole_snapshot(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Customer heads (docs/architecture.md "Customer heads"): each listed customer's object alone, sent as its page
    of the customers list comes, so the upload creates ChartMogul's customers while the export lists the rest."""
    # One page or one partition per invocation, so the test sees when each message was sent.
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(handover_reserve_s=900, customers_per_partition=40))
    seen: list[tuple[int, int]] = []  # (heads, snapshots) taken off the raw queue after each invocation
    listed: list[int] = []  # customers listed by the end of each invocation
    outcome = rig.invoke({"mode": "backfill"})
    for _ in range(400):  # bounded: a run that never finishes fails below
        rig.raw_messages.extend(rig.take_raw_messages())
        seen.append((len(rig.customer_heads), len(rig.raw_messages)))
        listed.append(outcome["detail"]["customers_listed"])
        if not rig.continuations:
            break
        outcome = rig.invoke(rig.continuations.pop(0).model_dump(mode="json"))
    assert outcome["finished"] is True

    live = sorted(c.id for c in account.store.customers if c.deleted_at is None)
    assert sorted(m.customer_external_id for m in rig.customer_heads) == live
    # The first page's heads went before the customers were listed whole (the account has two pages of them): the
    # upload can start a page's round trip into the run. Every invocation had sent the heads of what it listed.
    assert 0 < seen[0][0] < len(live) and listed[0] < len(live)
    assert all(heads == customers for (heads, _), customers in zip(seen, listed, strict=True) if customers < len(live))
    first_snapshots = next(i for i, (_, snapshots) in enumerate(seen) if snapshots)
    assert seen[first_snapshots - 1][0] == len(live)  # every head went before the first whole snapshot
    assert outcome["detail"]["customer_heads_sent"] == len(live)
    assert outcome["detail"]["customers_enqueued"] == len(rig.raw_messages)  # heads are not counted as exported
    snapshots = {m.customer_external_id: m for m in rig.raw_messages}
    for head in rig.customer_heads:
        assert head.payload is not None and head.payload.customer_only
        whole = snapshots[head.customer_external_id]
        assert whole.payload is not None and head.payload.customer == whole.payload.customer
        assert head.snapshot_time == whole.snapshot_time and head.upload_mode == whole.upload_mode == "bulk"


def test_a_backfill_without_customer_heads_sends_only_the_whole_snapshots(rig: ExportRig, account: Account) -> None:
    rig.environment["BACKFILL_CUSTOMER_HEADS"] = "false"
    outcomes = rig.run({"mode": "backfill"})
    assert outcomes[-1]["finished"] is True and outcomes[-1]["detail"]["customer_heads_sent"] == 0
    assert rig.customer_heads == []
    assert sorted(by_customer(rig.raw_messages)) == customers_with_history(account)


def test_an_orphan_whose_customer_stripe_refuses_for_good_is_set_aside_and_the_backfill_finishes(
    rig: ExportRig, account: Account
) -> None:
    # A subscription whose customer Stripe answers 404 for (test data deleted under it, say): the backfill finds
    # the subscription, not its customer, and asks Stripe for the customer.
    store = account.store
    subscription = next(s for s in store.subscriptions if s.status == "canceled")
    owner, subscription.customer = subscription.customer, "cus_Vanished1"
    store.subscriptions.invalidate()
    try:
        expected = customers_with_history(account)
        outcomes = rig.run({"mode": "backfill"})
    finally:  # the account is the module's
        subscription.customer = owner
        store.subscriptions.invalidate()

    assert outcomes[-1]["finished"] is True and outcomes[-1]["detail"]["customers_set_aside"] == 1
    assert sorted(by_customer(rig.raw_messages)) == expected
    [record] = [BadRecord.model_validate_json(m["Body"]) for m in rig.stack.receive_all("BadRecordsQueue")]
    assert record.stage == "export" and record.object_id == "cus_Vanished1" and "HTTP 404" in record.reason
    assert json.loads(record.original_body) == {"mode": "customer", "customer_id": "cus_Vanished1"}


def test_a_staged_chunk_that_disappears_before_a_resume_fails_the_run_loudly_instead_of_finishing_without_it(
    rig: ExportRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One page per invocation, each written and checkpointed: every continuation resumes the run.
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(handover_reserve_s=900, flush_bytes=1))
    event: dict[str, object] = {"mode": "backfill", "run_id": "chunk-lost"}
    for _ in range(200):
        rig.invoke(event)
        event = rig.continuations.pop(0).model_dump(mode="json")
        item = rig.state_item("backfill#chunk-lost", "checkpoint")
        assert item is not None
        if json.loads(item["checkpoint"]["S"])["staged_chunks"].get("invoices", 0) >= 2:
            break  # invoices are being staged, partition by partition
    s3, bucket = rig.stack.clients.s3, rig.environment["STAGING_BUCKET"]
    staged = s3.list_objects_v2(Bucket=bucket, Prefix="backfill/chunk-lost/invoices/p=")["Contents"]
    lost = staged[len(staged) // 2]["Key"]
    s3.delete_object(Bucket=bucket, Key=lost)

    outcome = rig.invoke(event)

    assert outcome["finished"] is False and rig.continuations == []  # no hand-over: the run stops here
    assert (
        "staged chunk(s) of step invoices are gone" in outcome["error"] and "start a new backfill" in outcome["error"]
    )
    assert f"first s3://{bucket}/{lost}" in outcome["error"]
    [record] = [BadRecord.model_validate_json(m["Body"]) for m in rig.stack.receive_all("BadRecordsQueue")]
    assert record.stage == "export" and "gone from S3" in record.reason
    assert rig.take_raw_messages() == []  # nothing was assembled from incomplete data


def test_a_continuation_of_a_run_that_never_started_is_refused_once_and_not_retried(rig: ExportRig) -> None:
    outcome = rig.invoke({"mode": "continuation", "resume": "backfill", "run_id": "never-started"})

    # Answered, not raised: Lambda would retry a raised error twice before the on-failure destination.
    assert outcome["field"] == "run_id" and outcome["finished"] is False
    assert "backfill never-started: no checkpoint to resume from" in outcome["error"]
    [record] = [BadRecord.model_validate_json(m["Body"]) for m in rig.stack.receive_all("BadRecordsQueue")]
    assert record.stage == "export" and record.field == "run_id"
