"""Incremental and one-customer export through the export function, against scenario changes in Stripe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chartmogul_sync.queues import BadRecord
from chartmogul_sync.sources.stripe.incremental import CURSOR_PK, CURSOR_SK
from chartmogul_sync.sources.stripe.invocation import InvalidExportRequest
from chartmogul_sync.sources.stripe.run import ExportLimits
from chartmogul_sync.sources.stripe.wiring import export_wiring
from localdev.scenarios import Account, generate_account

from .conftest import ExportRig, by_customer

DAY = 86_400


@pytest.fixture
def account() -> Account:
    # Function-scoped: the scenario steps change the account.
    return generate_account(customers=80, months=12, seed=5)


def schedule_event(rig: ExportRig) -> dict[str, Any]:
    """What EventBridge Scheduler sends (template.yaml's Input, its placeholder filled in)."""
    scheduled = datetime.fromtimestamp(rig.emulator.store.now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"mode": "incremental", "scheduled_time": scheduled}


def live_customers_on_a_plan(account: Account) -> list[str]:
    store = account.store
    live = {s.customer for s in store.subscriptions if s.status in ("active", "trialing", "past_due")}
    return sorted(c.id for c in store.customers if c.id in live and c.deleted_at is None)


def change(rig: ExportRig, kind: str, candidates: list[str], **step: Any) -> str:
    """Apply a step to the first candidate it fits (an upgrade needs a plan below the top one) and take it out."""
    for customer_id in list(candidates):
        try:
            rig.emulator.apply_step({"kind": kind, "customer": customer_id, **step})
        except ValueError:
            continue
        candidates.remove(customer_id)
        return customer_id
    raise AssertionError(f"no customer of the account accepts a {kind!r} step")


def test_an_incremental_run_exports_exactly_the_changed_customers_and_a_second_run_nothing(
    rig: ExportRig, account: Account
) -> None:
    rig.run({"mode": "backfill"})  # history first: it also hands the incremental cursor its start
    rig.raw_messages.clear()

    rig.emulator.clock.advance(seconds=60)
    candidates = live_customers_on_a_plan(account)
    changed = {
        change(rig, "upgrade", candidates),
        change(rig, "cancel", candidates),
        change(rig, "refund", candidates, share=0.5),
        change(rig, "credit_note", candidates, share=0.25),
        change(rig, "change_quantity", candidates, quantity=7),
    }
    deleted = change(rig, "delete_customer", candidates)
    new = rig.emulator.apply_step({"kind": "new_customer", "plan": "Pro", "interval": "monthly", "currency": "usd"})
    changed |= {deleted, new["customer"]}

    outcomes = rig.run(schedule_event(rig))

    assert outcomes[-1]["finished"] is True and outcomes[-1]["detail"]["cursor_advanced"] is True
    snapshots = by_customer(rig.raw_messages)
    assert set(snapshots) == changed
    assert all(m.correlation_id == outcomes[0]["run_id"] for m in rig.raw_messages)
    direct = rig.direct_snapshots(sorted(changed - {deleted}))
    for customer_id, snapshot in direct.items():
        assert snapshots[customer_id] == snapshot, customer_id
    gone = json.loads(snapshots[deleted])
    assert gone["deleted"] is True
    assert gone["customer"]["deleted"] is True and "@example.com" in gone["customer"]["email"]  # last known
    assert gone["customer"]["deleted_at"] == account.store.customers.get(deleted).deleted_at  # type: ignore[union-attr]
    assert [s["status"] for s in gone["subscriptions"]] == ["canceled"] * len(gone["subscriptions"])

    rig.raw_messages.clear()
    requests_before = rig.stripe_requests()
    second = rig.run(schedule_event(rig))

    assert rig.raw_messages == []
    assert second[-1]["customers_enqueued"] == 0
    assert rig.stripe_requests() - requests_before == 1  # the first page of /v1/events, and nothing else


def test_the_cursor_moves_only_once_every_changed_customer_is_on_the_queue(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.run({"mode": "backfill"})
    rig.raw_messages.clear()
    cursor_after_backfill = rig.state_item(CURSOR_PK, CURSOR_SK)
    rig.emulator.clock.advance(seconds=60)
    candidates = live_customers_on_a_plan(account)
    changed = {change(rig, "cancel", candidates) for _ in range(4)}
    # Every invocation may export one customer, then must hand over.
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(handover_reserve_s=900))

    first = rig.invoke(schedule_event(rig))

    assert first["finished"] is False and first["customers_enqueued"] == 1
    assert rig.state_item(CURSOR_PK, CURSOR_SK) == cursor_after_backfill
    rig.raw_messages.extend(rig.take_raw_messages())
    while rig.continuations:
        rig.invoke(rig.continuations.pop(0).model_dump(mode="json"))
        rig.raw_messages.extend(rig.take_raw_messages())
    assert set(by_customer(rig.raw_messages)) == changed
    assert rig.state_item(CURSOR_PK, CURSOR_SK) != cursor_after_backfill


def test_a_cursor_older_than_the_event_retention_falls_back_to_a_rescan_and_says_so(
    rig: ExportRig, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    rig.run({"mode": "backfill"})
    rig.raw_messages.clear()
    cursor_time = rig.emulator.store.now
    account.advance_to(cursor_time + 45 * DAY)  # six weeks of renewals, payments and retries, unexported
    invoiced = {i.customer for i in account.store.invoices if i.created >= cursor_time}

    with caplog.at_level("WARNING"):
        outcomes = rig.run(schedule_event(rig))

    assert outcomes[-1]["finished"] is True
    assert "older than Stripe's 30-day event retention" in caplog.text
    assert outcomes[0]["detail"]["rescanned_since"] == cursor_time
    exported = set(by_customer(rig.raw_messages))
    assert invoiced and invoiced <= exported
    rig.raw_messages.clear()
    rig.run(schedule_event(rig))
    assert rig.raw_messages == []


def test_a_one_customer_sync_sends_that_customer_now(rig: ExportRig, account: Account) -> None:
    customer_id = live_customers_on_a_plan(account)[0]

    outcomes = rig.run({"mode": "customer", "customer_id": customer_id})

    assert outcomes[-1]["customers_enqueued"] == 1
    assert by_customer(rig.raw_messages) == rig.direct_snapshots([customer_id])


def test_a_bad_event_fails_with_the_field_named_and_is_kept_on_the_bad_records_queue(rig: ExportRig) -> None:
    event = {"mode": "backfill", "from": "2024-02-30"}

    with pytest.raises(InvalidExportRequest, match="field 'from'"):
        rig.invoke(event)

    kept = [BadRecord.model_validate_json(m["Body"]) for m in rig.stack.receive_all("BadRecordsQueue")]
    assert len(kept) == 1
    assert kept[0].stage == "export" and "field 'from'" in kept[0].reason
    assert json.loads(kept[0].original_body) == event
    assert rig.stripe_requests() == 0
