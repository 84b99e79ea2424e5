"""What a snapshot must carry that Stripe does not hand over in one piece: lines past the first page, and a
snapshot too large for SQS."""

from __future__ import annotations

import dataclasses

import pytest

from chartmogul_sync import queues
from chartmogul_sync.models.envelope import RawMessage
from localdev.scenarios import Account, generate_account

from .conftest import ExportRig, by_customer, snapshot_json


@pytest.fixture
def account() -> Account:
    return generate_account(customers=60, months=12, seed=11)


def test_invoice_and_credit_note_lines_past_the_first_page_are_fetched_by_backfill_and_direct_fetch(
    rig: ExportRig, account: Account
) -> None:
    # Stripe embeds only the first lines of an invoice and a credit note (the emulator: 10). Give one customer
    # an invoice of 137 lines (two more pages of /lines) and a credit note of 23.
    store = account.store
    note = next(iter(store.credit_notes))
    invoice = store.invoices.get(note.invoice)
    assert invoice is not None
    for n in range(137 - len(invoice.lines)):
        extra = dataclasses.replace(invoice.lines[0], id=f"il_extra{n:05d}")
        invoice.lines.append(extra)
        store.invoice_lines[extra.id] = extra
    note.lines.extend(dataclasses.replace(note.lines[0], id=f"cnli_extra{n:05d}") for n in range(23 - len(note.lines)))

    rig.run({"mode": "backfill"})

    backfilled = {m.customer_external_id: m for m in rig.raw_messages}[invoice.customer]
    assert backfilled.payload is not None
    [invoice_json] = [i for i in backfilled.payload.invoices if i["id"] == invoice.id]
    assert [line["id"] for line in invoice_json["lines"]["data"]] == [line.id for line in invoice.lines]
    assert invoice_json["lines"]["has_more"] is False
    [note_json] = [n for n in backfilled.payload.credit_notes if n["id"] == note.id]
    assert [line["id"] for line in note_json["lines"]["data"]] == [line.id for line in note.lines]
    assert by_customer(rig.raw_messages)[invoice.customer] == rig.direct_snapshots([invoice.customer])[invoice.customer]


def test_a_snapshot_too_large_for_sqs_travels_through_an_s3_claim_check(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real customer's snapshot is a few kilobytes; lowering the threshold makes it "too large" without
    # building a megabyte-sized account.
    monkeypatch.setattr(queues, "CLAIM_CHECK_THRESHOLD_BYTES", 2_000)
    customer_id = max(
        account.store.customers, key=lambda c: len(account.store.invoices.indexed("customer", c.id) or [])
    ).id

    rig.invoke({"mode": "customer", "customer_id": customer_id})

    [raw] = rig.stack.receive_all("RawQueue")
    on_the_queue = RawMessage.model_validate_json(raw["Body"])
    assert on_the_queue.payload is None and on_the_queue.claim_check is not None
    assert on_the_queue.claim_check.size_bytes > 2_000
    resolved = queues.load_message(rig.stack.clients.s3, raw["Body"], RawMessage)
    assert snapshot_json(resolved) == rig.direct_snapshots([customer_id])[customer_id]
