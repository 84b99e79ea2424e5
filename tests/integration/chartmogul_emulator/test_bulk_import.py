"""Bulk JSON import lifecycle through the unmodified client (docs/sources.md#cm-bulk-import)."""

from __future__ import annotations

import time
from typing import Any

import chartmogul
import requests

from localdev.chartmogul_emulator.running import RunningEmulator

from .helpers import api_error, data_source


def _payload(import_id: str = "import_1") -> dict[str, Any]:
    return {
        "external_id": import_id,
        "customers": [{"external_id": "scus_1", "name": "One"}, {"external_id": "scus_2", "name": "Two"}],
        "plans": [{"name": "Gold", "external_id": "gold", "interval_count": 1, "interval_unit": "month"}],
        "invoices": [
            {"external_id": "inv_1", "customer_external_id": "scus_1", "date": "2024-01-01", "currency": "USD"},
            {"external_id": "inv_2", "customer_external_id": "scus_2", "date": "2024-01-01", "currency": "USD"},
        ],
        "line_items": [
            {
                "invoice_external_id": "inv_1",
                "type": "subscription",
                "amount_in_cents": 9900,
                "plan_external_id": "gold",
                "subscription_external_id": "sub_1",
                "service_period_start": "2024-01-01",
                "service_period_end": "2024-02-01",
            },
            {  # an unknown plan: this customer fails, the other one is imported
                "invoice_external_id": "inv_2",
                "type": "subscription",
                "amount_in_cents": 9900,
                "plan_external_id": "platinum",
                "subscription_external_id": "sub_2",
                "service_period_start": "2024-01-01",
                "service_period_end": "2024-02-01",
            },
        ],
        "transactions": [
            {"invoice_external_id": "inv_1", "type": "payment", "result": "successful", "date": "2024-01-02"}
        ],
        "subscription_events": [],
    }


def _wait_until_completed(config: Any, ds_uuid: str, import_id: str) -> tuple[list[str], Any]:
    statuses: list[str] = []
    for _ in range(200):  # bounded: ~0.1 s expected with the test timings, 4 s at most
        current = chartmogul.JsonImport.retrieve(config, data_source_uuid=ds_uuid, id=import_id).get()
        if not statuses or statuses[-1] != current.status:
            statuses.append(current.status)
        if current.status == "completed":
            return statuses, current
        time.sleep(0.02)
    raise AssertionError(f"import still {statuses[-1]}")


def test_lifecycle_queued_processing_completed_with_per_customer_status(
    chartmogul_emulator: RunningEmulator, chartmogul_config: Any
) -> None:
    chartmogul_emulator.emulator.options.bulk_processing_seconds = 0.1  # long enough to observe `processing`
    ds = data_source(chartmogul_config)
    created = chartmogul.JsonImport.create(chartmogul_config, data_source_uuid=ds.uuid, data=_payload()).get()
    assert (created.status, created.external_id, created.data_source_uuid) == ("queued", "import_1", ds.uuid)
    assert isinstance(created.id, str) and created.status_details == {}
    statuses, done = _wait_until_completed(chartmogul_config, ds.uuid, created.external_id)
    assert statuses[-2:] == ["processing", "completed"] and statuses[0] in ("queued", "processing")
    assert done.status_details["plans"] == {"status": "imported"}
    assert done.status_details["scus_1"]["status"] == "imported"
    assert done.status_details["scus_1"]["invoices"] == {"status": "imported"}
    assert done.status_details["scus_2"]["status"] == "failed"
    assert "Plan not found" in done.status_details["scus_2"]["errors"][0]
    # the imported customer's data is in place (and the failed one left nothing behind)
    customers = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds.uuid).get().entries
    assert [(c.external_id, c.mrr) for c in customers] == [("scus_1", 9900)]
    [stored] = chartmogul.Invoice.all(chartmogul_config, data_source_uuid=ds.uuid).get().invoices
    assert (stored.external_id, len(stored.line_items), len(stored.transactions)) == ("inv_1", 1, 1)
    assert done.id == created.id


def test_status_is_polled_by_the_callers_external_id_only(
    chartmogul_emulator: RunningEmulator, chartmogul_config: Any
) -> None:
    # https://dev.chartmogul.com/reference/bulk-import/track-status: the path parameter is the external_id the
    # caller chose; ChartMogul's returned `id` is not promised to work there.
    ds = data_source(chartmogul_config)
    created = chartmogul.JsonImport.create(chartmogul_config, data_source_uuid=ds.uuid, data=_payload()).get()
    by_external = chartmogul.JsonImport.retrieve(chartmogul_config, data_source_uuid=ds.uuid, id="import_1").get()
    assert by_external.id == created.id
    status, body = api_error(
        lambda: chartmogul.JsonImport.retrieve(chartmogul_config, data_source_uuid=ds.uuid, id=created.id).get()
    )
    assert (status, body["message"]) == (404, "Import not found")


def test_processing_status_counts_pending_imports(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    chartmogul_emulator.emulator.options.bulk_queued_seconds = 30  # keep it queued for this test
    ds = data_source(chartmogul_config)
    chartmogul.JsonImport.create(chartmogul_config, data_source_uuid=ds.uuid, data=_payload()).get()
    flagged = chartmogul.DataSource.retrieve(chartmogul_config, uuid=ds.uuid, with_processing_status=True).get()
    assert flagged.processing_status.pending == 1


def test_payload_over_5_mb_is_rejected(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    big = _payload()
    big["customers"] = [{"external_id": f"c{i}", "name": "x" * 1000} for i in range(5300)]
    status, body = api_error(
        lambda: chartmogul.JsonImport.create(chartmogul_config, data_source_uuid=ds.uuid, data=big).get()
    )
    assert status == 413 and body["message"] == "The JSON payload exceeds the 5 MB limit"


def test_bulk_import_errors(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    status, body = api_error(
        lambda: chartmogul.JsonImport.create(chartmogul_config, data_source_uuid="ds_missing", data=_payload()).get()
    )
    assert (status, body) == (404, {"error": "Data source not found"})
    ds = data_source(chartmogul_config)
    status, body = api_error(
        lambda: chartmogul.JsonImport.create(
            chartmogul_config, data_source_uuid=ds.uuid, data={"customers": {"x": 1}}
        ).get()
    )
    assert (status, body["param"]) == (400, "customers")
    status, _ = api_error(
        lambda: chartmogul.JsonImport.retrieve(chartmogul_config, data_source_uuid=ds.uuid, id="nope").get()
    )
    assert status == 404
    raw = requests.post(
        f"{chartmogul_emulator.api_url}/data_sources/{ds.uuid}/json_imports",
        data=b"{not json",
        auth=(chartmogul_emulator.api_key, ""),
        timeout=5,
    )
    assert raw.status_code == 400
