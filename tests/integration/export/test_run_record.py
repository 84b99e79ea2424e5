"""Each export run leaves its mode's last-run record (times, outcome, reason, customers exported) in the state
table, however it ends, and `cmsync status` reads it from there: sources/stripe/run.py `recorded_run`."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
import stripe

from chartmogul_sync.ops.status import SyncStatus, sync_status
from chartmogul_sync.sources.stripe.client import RetryPolicy
from chartmogul_sync.sources.stripe.run import ExportLimits, RunRecord, last_runs
from chartmogul_sync.sources.stripe.wiring import export_wiring
from chartmogul_sync.state import StateTable
from localdev.scenarios import Account, generate_account

from .conftest import ExportRig
from .test_incremental import change, live_customers_on_a_plan, schedule_event


@pytest.fixture
def account() -> Account:
    return generate_account(customers=16, months=6, seed=8)


def state(rig: ExportRig) -> StateTable:
    dynamodb = boto3.resource("dynamodb", region_name=rig.stack.region, endpoint_url=rig.stack.endpoint_url)
    return StateTable(dynamodb, rig.environment["STATE_TABLE"])


def status_of(rig: ExportRig) -> SyncStatus:
    now = datetime.fromtimestamp(rig.emulator.store.now, UTC)  # the account's clock, which the cursor follows
    return sync_status(state(rig), queue_depths={}, schedule="ENABLED", now=now)


def runs(rig: ExportRig) -> dict[str, RunRecord]:
    return last_runs(state(rig))


def test_each_mode_keeps_its_last_run_with_its_outcome_and_customers(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runs(rig) == {}
    rig.run({"mode": "backfill"})
    backfill = runs(rig)["backfill"]
    assert backfill.outcome == "ok" and backfill.reason is None
    assert backfill.customers_exported == len(rig.raw_messages) == len(account.store.customers)
    assert backfill.started_at <= backfill.finished_at and backfill.stripe_requests > 0
    assert backfill.run_id.startswith("backfill-")

    rig.raw_messages.clear()
    rig.emulator.clock.advance(seconds=60)
    candidates = live_customers_on_a_plan(account)
    changed = {change(rig, "cancel", candidates) for _ in range(2)}
    # One customer per invocation, then a hand over: the first invocation's record says the run goes on.
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(handover_reserve_s=900))
    rig.invoke(schedule_event(rig))
    assert runs(rig)["incremental"].outcome == "continuing"
    assert runs(rig)["incremental"].customers_exported == 1
    while rig.continuations:
        rig.invoke(rig.continuations.pop(0).model_dump(mode="json"))
    incremental = runs(rig)["incremental"]
    assert incremental.outcome == "ok" and incremental.run_id.startswith("incremental-2")
    assert set(runs(rig)) == {"backfill", "incremental"}  # the backfill's record stays beside it

    customer = sorted(changed)[0]
    rig.run({"mode": "customer", "customer_id": customer})
    assert runs(rig)["customer"].customers_exported == 1 and runs(rig)["customer"].outcome == "ok"


def test_a_failed_run_is_recorded_with_its_reason_and_status_says_so(
    rig: ExportRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.run({"mode": "backfill"})
    assert status_of(rig).healthy

    # Stripe fails every request and nothing retries: the run fails and Lambda would retry the invocation.
    monkeypatch.setattr(export_wiring, "retry_policy", RetryPolicy(max_attempts=1, reserve_s=0.0))
    rig.emulator.server.set_faults("500:1.0", seed=1)
    with pytest.raises(stripe.APIError):
        rig.invoke(schedule_event(rig))

    failed = runs(rig)["incremental"]
    assert failed.outcome == "failed"
    assert failed.reason is not None and failed.reason.startswith("APIError")
    status = status_of(rig)
    assert status.healthy is False
    assert status.as_dict()["last_runs"]["incremental"]["outcome"] == "failed"
    assert status.as_dict()["last_runs"]["backfill"]["outcome"] == "ok"

    # The next run gets through: its record replaces the failure, and the sync is healthy again.
    rig.emulator.server.set_faults("", seed=1)
    rig.run(schedule_event(rig))
    assert runs(rig)["incremental"].outcome == "ok"
    assert status_of(rig).healthy
