"""The upload cases that used to loop or fail whole batches: a poisoned record in a bulk batch, a customer merged
in ChartMogul, an external id another customer holds, and a customer too large for one DynamoDB item."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import chartmogul
import pytest
from moto import mock_aws

from chartmogul_sync.models import Invoice, OneTimeLineItem, Transaction, TransactionResult, TransactionType
from chartmogul_sync.sinks.chartmogul.apply import KnownCustomer
from chartmogul_sync.sinks.chartmogul.client import TimeBudget
from chartmogul_sync.sinks.chartmogul.idmap import IdMap
from chartmogul_sync.sinks.chartmogul.uploader import BundleRefused, Outcome
from localdev.chartmogul_emulator import RunningEmulator

from ...unit.upload.bundles import SNAPSHOT_TIME, customer_bundle, monthly_invoice
from .conftest import chartmogul_state, expected_state, requests_made, upload, upload_instances

LATER = SNAPSHOT_TIME + dt.timedelta(days=1)


def data_source_uuid(emulator: RunningEmulator) -> str:
    return str(emulator.emulator.store.docs("data_sources")[0]["uuid"])


def customer_uuid(emulator: RunningEmulator, external_id: str) -> str:
    return next(str(c["uuid"]) for c in emulator.emulator.store.docs("customers") if c["external_id"] == external_id)


def config(emulator: RunningEmulator) -> chartmogul.Config:
    """A client Config as a ChartMogul user making a change by hand would have (pointed at the emulator)."""
    from chartmogul_sync.config import Settings
    from chartmogul_sync.sinks.chartmogul.client import make_config

    return make_config(emulator.api_key, Settings(chartmogul_api_url=emulator.api_url))


# ---------------------------------------------------------------- a bulk batch with one poisoned record


def test_one_record_that_breaks_the_bulk_apply_fails_alone(stack: Any, emulator: RunningEmulator) -> None:
    healthy = [customer_bundle(f"cus_ok{n}") for n in range(4)]
    poisoned = customer_bundle("cus_poisoned")
    upload(stack, poisoned, mode="api")
    # Its id map entry is unreadable (a corrupted item, or one written by an incompatible version).
    stack.clients.dynamodb.put_item(
        TableName=stack.resource_name("StateTable"),
        Item={
            "pk": {"S": f"idmap#{data_source_uuid(emulator)}"},
            "sk": {"S": "customer#cus_poisoned"},
            "known": {"S": "{not json"},
        },
    )
    upload(stack, *healthy, customer_bundle("cus_poisoned", snapshot_time=LATER, email="x@example.com"), mode="bulk")

    # The four others were imported; the poisoned one alone was retried, then dead-lettered.
    assert {k: [r for r in v if r[0] != "cus_poisoned"] for k, v in chartmogul_state(emulator).items()} == {
        k: v for k, v in expected_state(*healthy).items()
    }
    dead = stack.receive_all("UploadDeadLetterQueue")
    assert [json.loads(m["Body"])["customer_external_id"] for m in dead] == ["cus_poisoned"]


# ---------------------------------------------------------------- a customer merged in ChartMogul


def test_a_customer_merged_in_chartmogul_keeps_receiving_its_history_without_a_loop(
    stack: Any, emulator: RunningEmulator
) -> None:
    alice, bob = customer_bundle("cus_alice"), customer_bundle("cus_bob")
    upload(stack, alice, bob)
    chartmogul.Customer.merge(
        config(emulator),
        data={
            "from": {"customer_uuid": customer_uuid(emulator, "cus_alice")},
            "into": {"customer_uuid": customer_uuid(emulator, "cus_bob")},
        },
    ).get()

    emulator.server.counter.reset()
    later = customer_bundle("cus_alice", months=4, snapshot_time=LATER, email="alice@new.example")
    upload(stack, later)

    # Alice's new invoice went to the customer she was merged into; Bob's own fields were not overwritten.
    bob_now = next(c for c in emulator.emulator.store.docs("customers") if c["external_id"] == "cus_bob")
    assert bob_now["email"] == "bob@example.com"
    invoices = {i["external_id"]: i["customer_uuid"] for i in emulator.emulator.store.docs("invoices")}
    assert invoices["in_cus_alice_04"] == bob_now["uuid"]
    assert stack.receive_all("BadRecordsQueue") == []
    assert stack.queue_depth("UploadDeadLetterQueue") == 0
    assert sum(requests_made(emulator).values()) <= 8  # found the merge once, did not loop
    # The email change was tried on Alice's old uuid (404: that is how the merge shows), never written to Bob.
    assert [k for k in requests_made(emulator) if k.startswith("PATCH")] == ["PATCH /v1/customers/{uuid} 404"]


def test_deleting_a_merged_customer_is_refused_with_what_to_do(emulator: RunningEmulator, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        (uploader,) = upload_instances(emulator, 1)
        budget = TimeBudget.seconds(60)
        uploader.apply(customer_bundle("cus_alice"), budget)
        uploader.apply(customer_bundle("cus_bob"), budget)
        chartmogul.Customer.merge(
            config(emulator),
            data={
                "from": {"customer_uuid": customer_uuid(emulator, "cus_alice")},
                "into": {"customer_uuid": customer_uuid(emulator, "cus_bob")},
            },
        ).get()
        uploader.apply(customer_bundle("cus_alice", months=4, snapshot_time=LATER), budget)  # learns the merge
        deleted = customer_bundle("cus_alice", snapshot_time=LATER + dt.timedelta(days=1))
        with pytest.raises(BundleRefused, match="merged into customer") as refused:
            uploader.apply(deleted.model_copy(update={"deleted_in_source": True}), budget)
        assert refused.value.customer_external_id == "cus_alice"
        assert any(c["external_id"] == "cus_bob" for c in emulator.emulator.store.docs("customers"))


# ---------------------------------------------------------------- an external id another customer holds


def test_an_external_id_another_customer_holds_is_a_bad_record_not_a_retry_loop(
    stack: Any, emulator: RunningEmulator
) -> None:
    upload(stack, customer_bundle("cus_alice", months=1))
    clash = monthly_invoice("cus_alice", 1)  # Alice's invoice id, reused in Bob's bundle
    bob = customer_bundle("cus_bob", invoices=[clash.model_copy(update={"transactions": []})])
    emulator.server.counter.reset()
    upload(stack, bob)

    [bad] = stack.receive_all("BadRecordsQueue")
    record = json.loads(bad["Body"])
    assert record["customer_external_id"] == "cus_bob"
    assert record["object_id"] == "in_cus_alice_01"
    assert "Another customer holds this external id" in record["reason"]
    assert "has already been taken" in record["reason"] or "already exists" in record["reason"]
    # One delivery, two import attempts (the second after asking ChartMogul), not five rounds of five deliveries.
    assert requests_made(emulator)["POST /v1/import/customers/{uuid}/invoices 422"] == 2
    assert stack.queue_depth("UploadDeadLetterQueue") == 0


# ---------------------------------------------------------------- a customer of 20,000 invoices


def test_the_id_map_of_a_20000_invoice_customer_is_stored_and_only_changed_parts_rewritten(monkeypatch: Any) -> None:
    from tests.fixtures.state_table import create_state_table

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        state = create_state_table("state")
        idmap = IdMap(state, api=None, data_source_uuid="ds_1")  # type: ignore[arg-type]  # no ChartMogul call
        invoices = {f"in_{n:06d}": f"inv_{n:08d}-0000-0000-0000-000000000000" for n in range(20_000)}
        known = KnownCustomer(
            exists=True,
            uuid="cus-uuid",
            invoices=invoices,
            transactions=frozenset(f"ch_{n:06d}" for n in range(20_000)),
        )
        idmap.remember_customer("cus_big", known)
        assert IdMap(state, None, "ds_1").known_customer("cus_big") == known  # type: ignore[arg-type]

        writes: Counter[str] = Counter()
        original_put = state.put

        def counting_put(pk: str, sk: str, attributes: Any) -> None:
            writes[sk.split("#part#")[0] + ("#part" if "#part#" in sk else "")] += 1
            original_put(pk, sk, attributes)

        state.put = counting_put  # type: ignore[method-assign]
        one_more = KnownCustomer(
            exists=True, uuid="cus-uuid", invoices=invoices, transactions=known.transactions | {"ch_new"}
        )
        reader = IdMap(state, None, "ds_1")  # type: ignore[arg-type]
        reader.known_customer("cus_big")
        reader.remember_customer("cus_big", one_more)
        assert writes == Counter({"customer#cus_big": 1, "customer#cus_big#part": 1})
        assert IdMap(state, None, "ds_1").known_customer("cus_big") == one_more  # type: ignore[arg-type]
        items = list(state.query("idmap#ds_1"))
        assert all(len(json.dumps(item)) < 400_000 for item in items)


@pytest.mark.slow
def test_a_20000_invoice_customer_is_imported_and_a_change_applied(emulator: RunningEmulator, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # One a day would run into the future (ChartMogul stores future invoices with errors): one an hour, all past.
    first = dt.datetime(2023, 6, 1, tzinfo=dt.UTC)
    invoices = [_hourly_invoice("cus_big", first + dt.timedelta(hours=n), n) for n in range(20_000)]
    with mock_aws():
        (uploader,) = upload_instances(emulator, 1)
        budget = TimeBudget.seconds(600)
        first = uploader.apply(customer_bundle("cus_big", invoices=invoices, custom_attributes=False), budget)
        assert first.outcome is Outcome.APPLIED and first.writes["invoices_created"] == 20_000
        last = invoices[-1]
        refund = Transaction(
            external_id="re_cus_big_last",
            type=TransactionType.REFUND,
            result=TransactionResult.SUCCESSFUL,
            date=last.date + dt.timedelta(minutes=30),
            amount_in_cents=100,
        )
        refunded = [*invoices[:-1], last.model_copy(update={"transactions": [*last.transactions, refund]})]
        later = customer_bundle("cus_big", invoices=refunded, snapshot_time=LATER, custom_attributes=False)
        second = uploader.apply(later, budget)
        assert second.writes == Counter({"transactions_added": 1})


def _hourly_invoice(customer: str, when: dt.datetime, n: int) -> Invoice:
    """A paid one-off invoice (a usage charge, say): the smallest invoice a large customer has many of."""
    return Invoice(
        external_id=f"in_{customer}_{n:06d}",
        date=when,
        currency="USD",
        line_items=[OneTimeLineItem(external_id=f"il_{customer}_{n:06d}", amount_in_cents=500, description="Usage")],
        transactions=[
            Transaction(
                external_id=f"ch_{customer}_{n:06d}",
                type=TransactionType.PAYMENT,
                result=TransactionResult.SUCCESSFUL,
                date=when + dt.timedelta(minutes=5),
                amount_in_cents=500,
            )
        ],
    )
