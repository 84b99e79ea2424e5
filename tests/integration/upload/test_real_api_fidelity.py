"""The uploader against the corners where the real ChartMogul API differs from what was first assumed (issue 12).

Each test drives the domain (BundleUploader on a moto state table) against the emulator over loopback, with the
`chartmogul` client between them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from chartmogul_sync.sinks.chartmogul.client import TimeBudget
from chartmogul_sync.sinks.chartmogul.uploader import ApplyResult, BundleRefused
from localdev.chartmogul_emulator import RunningEmulator, start
from localdev.chartmogul_emulator.api_invoices import delete_invoices

from ...unit.upload.bundles import customer_bundle, monthly_invoice
from .conftest import EMULATOR_NOW, chartmogul_state, direct_uploader, expected_state, requests_made


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, RunningEmulator]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(), start(now=EMULATOR_NOW, rate_limit=None, max_connections=None) as emulator:
        uploader, _api = direct_uploader(emulator)
        yield uploader, emulator


def budget() -> TimeBudget:
    return TimeBudget.seconds(60)


def test_a_line_item_id_taken_by_another_invoice_is_a_bad_record_not_a_loop(world):
    # chartmogul-go `IsInvoiceAndItsEntitiesAlreadyExist`: a duplicate line id on a new invoice is not a replay.
    uploader, emulator = world
    uploader.apply(customer_bundle("cus_bob", months=1), budget())
    clash = monthly_invoice("cus_alice", 1).model_copy(update={"line_items": monthly_invoice("cus_bob", 1).line_items})
    with pytest.raises(BundleRefused) as refused:
        uploader.apply(customer_bundle("cus_alice", invoices=[clash]), budget())
    assert refused.value.object_id == "in_cus_alice_01"
    assert "line item already exists" in str(refused.value)
    assert requests_made(emulator)["POST /v1/import/customers/{uuid}/invoices 422"] == 1  # asked once, no loop


def test_a_subscription_deleted_by_hand_in_chartmogul_heals_on_the_next_bundle(world):
    uploader, emulator = world
    uploader.apply(customer_bundle("cus_alice"), budget())
    # Someone deletes the subscription in ChartMogul's app: the subscription and its invoices are gone.
    store = emulator.emulator.store
    [subscription] = store.docs("subscriptions")
    invoices = store.column_values("line_items", "invoice_uuid", subscription_uuid=subscription["uuid"])
    with store.transaction():
        delete_invoices(emulator.emulator, invoices)
    cancelled = customer_bundle(
        "cus_alice", cancelled_at=dt.datetime(2025, 3, 20, tzinfo=dt.UTC), snapshot_time=EMULATOR_NOW
    )
    result = uploader.apply(cancelled, budget())  # a 404 on the cancellation, then the invoices again
    assert isinstance(result, ApplyResult)
    assert result.writes["invoices_created"] == 3 and result.writes["cancellations_set"] == 1
    assert chartmogul_state(emulator) == expected_state(cancelled)


@pytest.mark.parametrize("enabled", [True, False], ids=["on-as-recorded", "off"])
def test_the_auto_churn_setting_is_read_once_and_warned_about_when_on(monkeypatch, caplog, enabled):
    from chartmogul_sync.sinks.chartmogul import source_settings

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(), start(now=EMULATOR_NOW, rate_limit=None, auto_churn_enabled=enabled) as emulator:
        uploader, api = direct_uploader(emulator)
        data_source = uploader.idmap.data_source_uuid
        assert source_settings.warn_if_auto_churn(api, data_source, budget()) is enabled
        assert source_settings.warn_if_auto_churn(api, data_source, budget()) is None  # once per process
        assert requests_made(emulator)["GET /v1/data_sources/{uuid} 200"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("ChartMogul auto-churn is on for this data source" in w for w in warnings) is enabled


def test_a_line_item_chartmogul_stores_as_invalid_is_a_bad_record_naming_it(world):
    # 201 with `errors` on the line (chartmogul-python test_invoice.py InvoiceErrorsTestCase): without this check
    # the line would count as imported while ChartMogul leaves its MRR out.
    uploader, emulator = world
    negative = monthly_invoice("cus_alice", 2, amount=-4900, paid=False)
    with pytest.raises(BundleRefused) as refused:
        uploader.apply(customer_bundle("cus_alice", invoices=[monthly_invoice("cus_alice", 1), negative]), budget())
    assert refused.value.object_id == "il_cus_alice_02"
    assert (refused.value.field, "must be positive") == ("amount_in_cents", refused.value.error.details[0].message)
    assert "must be positive" in str(refused.value)
    # all-or-nothing per invoice: the invalid one is removed again, the valid one stays
    assert [i["external_id"] for i in emulator.emulator.store.docs("invoices")] == ["in_cus_alice_01"]


def test_a_transaction_chartmogul_stores_as_invalid_is_removed_and_a_bad_record(world):
    uploader, emulator = world
    unpaid = monthly_invoice("cus_alice", 1, paid=False)
    uploader.apply(customer_bundle("cus_alice", invoices=[unpaid]), budget())
    paid_later = monthly_invoice("cus_alice", 1)  # its payment dated after the emulator's clock: "in the future"
    late = paid_later.transactions[0].model_copy(update={"date": EMULATOR_NOW + dt.timedelta(days=3)})
    bundle = customer_bundle(
        "cus_alice", invoices=[paid_later.model_copy(update={"transactions": [late]})], snapshot_time=EMULATOR_NOW
    )
    with pytest.raises(BundleRefused) as refused:
        uploader.apply(bundle, budget())
    assert refused.value.object_id == "inpay_cus_alice_01" and "is in the future" in str(refused.value)
    assert emulator.emulator.store.docs("transactions") == []


@pytest.mark.parametrize("undeclared", ["refuse", "ignore"])
def test_a_new_metadata_key_is_created_as_a_typed_attribute_before_the_update(world, undeclared):
    # "Attribute must first be created using the POST call" (dev.chartmogul.com update-custom-attributes);
    # what ChartMogul does otherwise is undocumented: both emulator variants end with the attribute set.
    uploader, emulator = world
    emulator.emulator.options.undeclared_custom_attributes = undeclared
    uploader.apply(customer_bundle("cus_alice", custom_attributes=False), budget())
    uploader.apply(customer_bundle("cus_alice", snapshot_time=EMULATOR_NOW), budget())
    [stored] = emulator.emulator.store.docs("customers")
    assert stored["attributes"]["custom"] == {"channel": "partner"}
    assert emulator.emulator.store.docs("custom_attributes") == [{"key": "channel", "type": "String"}]
    assert requests_made(emulator)["POST /v1/customers/{uuid}/attributes/custom 200"] == 1
    # created once per process: the next customer's update needs no second creation
    uploader.apply(customer_bundle("cus_bob", custom_attributes=False), budget())
    uploader.apply(customer_bundle("cus_bob", snapshot_time=EMULATOR_NOW), budget())
    assert requests_made(emulator)["POST /v1/customers/{uuid}/attributes/custom 200"] == 1
