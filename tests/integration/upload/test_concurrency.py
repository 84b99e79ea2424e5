"""Concurrent uploads of one customer: the newest bundle wins, whatever the interleaving (issue: stale versions).

Each "instance" is a BundleUploader with its own client, id map and leases on one shared state table and one
ChartMogul emulator: what two concurrent Lambda instances of the upload function share. The forced tests make
the interleaving that used to lose (the older bundle passes its staleness check, the newer one tries to apply in
full meanwhile, the older continues); the randomized test applies many versions of many customers from several
instances at once in random order.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from moto import mock_aws

from chartmogul_sync.models import CustomerBundle
from chartmogul_sync.sinks.chartmogul.bulk import BulkUploader
from chartmogul_sync.sinks.chartmogul.client import TimeBudget
from chartmogul_sync.sinks.chartmogul.leases import LeaseUnavailable
from chartmogul_sync.sinks.chartmogul.uploader import HEAD_LEASE_BUSY, ApplyResult, BundleUploader, Outcome
from localdev.chartmogul_emulator import RunningEmulator, start

from ...unit.upload.bundles import SNAPSHOT_TIME, customer_bundle, monthly_invoice
from .conftest import EMULATOR_NOW, chartmogul_state, expected_state, upload_instances, writes_made
from .test_customer_heads import head_of

CANCELLED = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with (
        mock_aws(),
        start(now=EMULATOR_NOW, rate_limit=None, max_connections=None, bulk_queued_seconds=0.02) as running,
    ):
        yield running


def version(n: int) -> dt.datetime:
    return SNAPSHOT_TIME + dt.timedelta(hours=n)


def apply_in(mode: str, uploader: BundleUploader, bundle: CustomerBundle) -> Any:
    """Apply one bundle the way the upload function does in `mode`; the outcome (a result or a failure)."""
    budget = TimeBudget.seconds(60)
    if mode == "bulk":
        return BulkUploader(uploader._api, uploader, sleep=lambda s: threading.Event().wait(min(s, 0.05))).apply_many(
            [bundle], budget
        )[0]
    try:
        return uploader.apply(bundle, budget)
    except LeaseUnavailable as unavailable:
        return unavailable


# ---------------------------------------------------------------- the forced interleaving


def fields_change(customer: str) -> tuple[CustomerBundle, CustomerBundle]:
    return (
        customer_bundle(customer, snapshot_time=version(1), email="old@example.com"),
        customer_bundle(customer, snapshot_time=version(2), email="new@example.com"),
    )


def deletion(customer: str) -> tuple[CustomerBundle, CustomerBundle]:
    older = customer_bundle(customer, months=4, snapshot_time=version(1))
    newer = customer_bundle(customer, months=4, snapshot_time=version(2)).model_copy(update={"deleted_in_source": True})
    return older, newer


def voided_invoice(customer: str) -> tuple[CustomerBundle, CustomerBundle]:
    older = customer_bundle(customer, months=3, snapshot_time=version(1), email="old@example.com")
    kept = [monthly_invoice(customer, m) for m in (1, 2)]
    newer = customer_bundle(customer, invoices=kept, removed=[f"in_{customer}_03"], snapshot_time=version(2))
    return older, newer


def cancellation(customer: str) -> tuple[CustomerBundle, CustomerBundle]:
    return (
        customer_bundle(customer, snapshot_time=version(1), email="old@example.com"),
        customer_bundle(customer, snapshot_time=version(2), cancelled_at=CANCELLED),
    )


SCENARIOS: dict[str, Callable[[str], tuple[CustomerBundle, CustomerBundle]]] = {
    "customer fields": fields_change,
    "deletion": deletion,
    "voided invoice": voided_invoice,
    "cancellation": cancellation,
}


def expected_customer_state(bundle: CustomerBundle) -> dict[str, Any]:
    """What ChartMogul must hold of this bundle's customer once the bundle is applied (`customer_state` terms)."""
    if bundle.deleted_in_source:
        return {"customers": [], "invoices": [], "cancellations": []}
    return {k: v for k, v in expected_state(bundle).items() if k != "plans"}


def customer_state(emulator: RunningEmulator, customer: str) -> dict[str, Any]:
    state = chartmogul_state(emulator)
    return {k: [row for row in rows if row[0] == customer] for k, rows in state.items() if k != "plans"}


def pause_after_staleness_check(uploader: BundleUploader) -> tuple[threading.Event, threading.Event]:
    """Make `uploader` stop right after its bundle passed the staleness check, until `go` is set."""
    checked, go = threading.Event(), threading.Event()
    original = uploader.skip_reason

    def skip_reason_then_pause(bundle: CustomerBundle) -> ApplyResult | None:
        decision = original(bundle)
        if decision is None:
            checked.set()
            assert go.wait(30), "the test never let the older bundle continue"
        return decision

    uploader.skip_reason = skip_reason_then_pause  # type: ignore[method-assign]
    return checked, go


@pytest.mark.parametrize("mode", ["api", "bulk"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_an_older_bundle_that_passed_its_check_cannot_overwrite_a_newer_one(
    emulator: RunningEmulator, mode: str, scenario: str
) -> None:
    customer = "cus_race"
    older, newer = SCENARIOS[scenario](customer)
    first, second = upload_instances(emulator, 2, lease_wait_s=0.3)
    if mode == "api":  # api mode updates a customer ChartMogul has; bulk mode races on the first import
        assert isinstance(apply_in(mode, first, customer_bundle(customer, snapshot_time=version(0))), ApplyResult)

    checked, go = pause_after_staleness_check(first)
    with ThreadPoolExecutor(max_workers=1) as pool:
        older_outcome = pool.submit(apply_in, mode, first, older)
        assert checked.wait(30)
        # The newer bundle arrives while the older one holds the customer: it must not write anything now.
        emulator.server.counter.reset()
        attempt = apply_in(mode, second, newer)
        assert isinstance(attempt, LeaseUnavailable)
        assert writes_made(emulator) == {}
        go.set()
        assert isinstance(older_outcome.result(timeout=60), ApplyResult)

    # SQS redelivers the newer bundle: it applies, and the older one, delivered again, is stale.
    redelivered = apply_in(mode, second, newer)
    assert isinstance(redelivered, ApplyResult) and redelivered.outcome is Outcome.APPLIED
    assert customer_state(emulator, customer) == expected_customer_state(newer)
    again = apply_in(mode, first, older)
    assert isinstance(again, ApplyResult) and again.outcome is Outcome.STALE
    assert customer_state(emulator, customer) == expected_customer_state(newer)


# ---------------------------------------------------------------- many customers, many versions, at random

TRIALS = {
    "api": int(os.environ.get("CONCURRENCY_TRIALS_API", "120")),
    "bulk": int(os.environ.get("CONCURRENCY_TRIALS_BULK", "60")),
}


def random_versions(customer: str, rng: random.Random) -> list[CustomerBundle]:
    """2-4 successive snapshots of one customer, each changing something a user would see."""
    bundles = []
    for n in range(rng.randint(2, 4)):
        months = rng.randint(1, 4)
        removed = [f"in_{customer}_{m:02d}" for m in range(months + 1, 5)]
        bundle = customer_bundle(
            customer,
            months=months,
            removed=removed,
            snapshot_time=version(n + 1),
            email=f"v{n}@example.com",
            cancelled_at=CANCELLED if rng.random() < 0.3 else None,
        )
        if rng.random() < 0.15:
            bundle = bundle.model_copy(update={"deleted_in_source": True})
        bundles.append(bundle)
    return bundles


@pytest.mark.parametrize("mode", ["api", "bulk"])
def test_concurrent_uploads_of_random_versions_always_end_at_the_newest(emulator: RunningEmulator, mode: str) -> None:
    rng = random.Random(f"concurrency-{mode}")
    instances = upload_instances(emulator, 4, lease_wait_s=0.2)
    customers = [f"cus_{mode}_{n:03d}" for n in range(TRIALS[mode])]
    versions = {c: random_versions(c, rng) for c in customers}
    deliveries = [b for bundles in versions.values() for b in bundles]
    rng.shuffle(deliveries)

    outcomes: list[Any] = []
    lock = threading.Lock()

    def deliver(index_and_bundle: tuple[int, CustomerBundle]) -> None:
        index, bundle = index_and_bundle
        uploader = instances[index % len(instances)]
        # A lease another instance holds is a transient failure: SQS redelivers after the visibility timeout
        # (here a short pause; bounded).
        for _delivery in range(100):
            outcome = apply_in(mode, uploader, bundle)
            if not isinstance(outcome, LeaseUnavailable):
                break
            threading.Event().wait(0.05)
        with lock:
            outcomes.append((bundle, outcome))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(deliver, enumerate(deliveries)))

    assert all(isinstance(o, ApplyResult) for _, o in outcomes), [
        o for _, o in outcomes if not isinstance(o, ApplyResult)
    ][:3]
    stale_wins = [c for c in customers if customer_state(emulator, c) != expected_customer_state(versions[c][-1])]
    assert stale_wins == [], f"{len(stale_wins)} of {len(customers)} customers ended at an older version"
    # No duplicates: every invoice external id exists once (the emulator would refuse a second, but a deleted
    # and re-created customer could hold two copies under two uuids).
    invoice_ids = [row[1] for row in chartmogul_state(emulator)["invoices"]]
    assert len(invoice_ids) == len(set(invoice_ids))


# ---------------------------------------------------------------- customer heads beside full bundles


def test_a_batch_of_heads_keeps_no_full_bundle_of_its_customers_waiting(emulator: RunningEmulator) -> None:
    """A bulk batch of a backfill's heads is hundreds of creates at the instance's share of the rate. Had it held
    every head's lease until the last was created, a full bundle of one of those customers, arriving at another
    instance meanwhile, would wait and fail, and SQS would give it back only after the queue's visibility timeout
    (5,400 s). A head holds its customer's lease for its own request only."""
    customers = [customer_bundle(f"cus_head_{n}", months=3) for n in range(4)]
    first = customers[0].customer.external_id
    heads_instance, bundles_instance = upload_instances(emulator, 2, lease_wait_s=0.3)
    first_created, full_applied = threading.Event(), threading.Event()
    create_head = heads_instance.apply_customer_only

    def first_head_then_the_others(bundle: CustomerBundle, budget: TimeBudget) -> ApplyResult:
        if bundle.customer.external_id != first:  # the batch's other heads wait for the full bundle
            assert full_applied.wait(30), "the full bundle never finished"
        result = create_head(bundle, budget)
        if bundle.customer.external_id == first:
            first_created.set()
        return result

    heads_instance.apply_customer_only = first_head_then_the_others  # type: ignore[method-assign]
    bulk = BulkUploader(heads_instance._api, heads_instance, sleep=lambda s: threading.Event().wait(min(s, 0.05)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        heads = pool.submit(bulk.apply_many, [head_of(b) for b in customers], TimeBudget.seconds(60))
        assert first_created.wait(30), "the first head was never created"
        outcome = apply_in("bulk", bundles_instance, customers[0])  # while the other heads are still to come
        full_applied.set()
        head_outcomes = heads.result(timeout=60)

    assert isinstance(outcome, ApplyResult) and outcome.outcome is Outcome.APPLIED, outcome
    assert all(isinstance(o, ApplyResult) for o in head_outcomes), head_outcomes
    assert customer_state(emulator, first) == expected_customer_state(customers[0])


@pytest.mark.parametrize("mode", ["api", "bulk"])
def test_a_head_of_a_customer_being_applied_is_dropped_at_once_and_never_fails(
    emulator: RunningEmulator, mode: str
) -> None:
    """The apply holding the lease creates the customer itself: the head neither waits for it nor fails (a failed
    record would come back after the visibility timeout, for nothing)."""
    full = customer_bundle("cus_busy", months=2)
    heads_instance, other = upload_instances(emulator, 2, lease_wait_s=5.0)
    with other.leases.hold_if_free("cus_busy", TimeBudget.seconds(60)) as held:
        assert held
        emulator.server.counter.reset()
        outcome = apply_in(mode, heads_instance, head_of(full))
        assert writes_made(emulator) == {}
    assert isinstance(outcome, ApplyResult) and outcome.outcome is Outcome.UNCHANGED, outcome
    assert outcome.notes == [HEAD_LEASE_BUSY]
    # The lease given back, the full bundle applies as if the head had never come.
    assert isinstance(apply_in(mode, other, full), ApplyResult)
    assert customer_state(emulator, "cus_busy") == expected_customer_state(full)
