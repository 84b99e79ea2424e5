"""Auth, ping, data sources and plans through the unmodified `chartmogul` client (docs/sources.md#cm-transport,
#cm-data-sources, #cm-plans)."""

from __future__ import annotations

from typing import Any

import chartmogul
import requests

from localdev.chartmogul_emulator.running import RunningEmulator

from .helpers import api_error, data_source, plan


def test_ping_answers_pong(chartmogul_config: Any) -> None:
    assert chartmogul.Ping.ping(chartmogul_config).get().data == "pong!"


def test_a_wrong_api_key_gets_the_recorded_401_body(
    chartmogul_emulator: RunningEmulator, chartmogul_config: Any
) -> None:
    config = chartmogul.Config("not-the-key", max_retries=0, request_timeout=5)
    config.uri = chartmogul_emulator.api_url
    status, body = api_error(lambda: chartmogul.Ping.ping(config).get())
    assert (status, body) == (401, {"code": 401, "message": "No valid API key provided", "param": None})
    anonymous = requests.get(chartmogul_emulator.api_url + "/ping", timeout=5)
    assert anonymous.status_code == 401


def test_data_source_create_list_retrieve_delete(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    created = data_source(chartmogul_config, "Stripe import")
    assert created.uuid.startswith("ds_")
    assert (created.name, created.system, created.status) == ("Stripe import", "Import API", "idle")
    listed = chartmogul.DataSource.all(chartmogul_config).get()
    assert [ds.uuid for ds in listed.data_sources] == [created.uuid]
    # docs/sources.md#cm-pagination: no cursor/has_more on this list (the client's namedtuple would raise TypeError)
    raw = requests.get(chartmogul_emulator.api_url + "/data_sources", auth=(chartmogul_emulator.api_key, ""), timeout=5)
    assert set(raw.json()) == {"data_sources"}
    assert chartmogul.DataSource.retrieve(chartmogul_config, uuid=created.uuid).get().name == "Stripe import"
    assert chartmogul.DataSource.destroy(chartmogul_config, uuid=created.uuid).get() is None
    status, body = api_error(lambda: chartmogul.DataSource.retrieve(chartmogul_config, uuid=created.uuid).get())
    assert (status, body) == (404, {"error": "Data source not found"})


def test_data_source_names_are_unique_and_required(chartmogul_config: Any) -> None:
    data_source(chartmogul_config, "Billing")
    status, body = api_error(lambda: data_source(chartmogul_config, "Billing"))
    assert (status, body) == (422, {"errors": {"name": "Has already been taken."}})
    status, body = api_error(lambda: chartmogul.DataSource.create(chartmogul_config, data={}).get())
    assert (status, body) == (422, {"errors": {"name": "A name is required for each data source."}})


def test_data_source_optional_blocks_appear_only_when_asked(chartmogul_config: Any) -> None:
    created = data_source(chartmogul_config)
    plain = chartmogul.DataSource.retrieve(chartmogul_config, uuid=created.uuid).get()
    assert not hasattr(plain, "processing_status")
    flagged = chartmogul.DataSource.retrieve(
        chartmogul_config, uuid=created.uuid, with_processing_status=True, with_auto_churn_subscription_setting=True
    ).get()
    assert (flagged.processing_status.pending, flagged.processing_status.processed) == (0, 0)
    # As recorded for a source created through the API in 2025 (chartmogul-ruby VCR cassette
    # ChartMogul_DataSource/API_Interactions/correctly_interracts_with_the_API.yml).
    setting = flagged.auto_churn_subscription_setting
    assert (setting.enabled, setting.interval) == (True, 30)


def test_a_data_source_created_with_auto_churn_off_reports_it_off(
    chartmogul_emulator: RunningEmulator, chartmogul_config: Any
) -> None:
    chartmogul_emulator.emulator.options.auto_churn_enabled = False
    created = data_source(chartmogul_config)
    flagged = chartmogul.DataSource.retrieve(
        chartmogul_config, uuid=created.uuid, with_auto_churn_subscription_setting=True
    ).get()
    setting = flagged.auto_churn_subscription_setting
    assert (setting.enabled, setting.interval) == (False, None)


def test_unknown_data_source_delete_is_404(chartmogul_config: Any) -> None:
    status, body = api_error(lambda: chartmogul.DataSource.destroy(chartmogul_config, uuid="ds_missing").get())
    assert (status, body) == (404, {"error": "Data source not found"})


def test_plan_lifecycle_with_202_on_patch(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = plan(chartmogul_config, ds.uuid, "price_gold", unit="year", count=1)
    assert created.uuid.startswith("pl_")
    assert (created.interval_unit, created.interval_count, created.external_id) == ("year", 1, "price_gold")
    # docs/sources.md#cm-plans: PATCH answers 202, so the client returns None; the change is stored
    assert chartmogul.Plan.modify(chartmogul_config, uuid=created.uuid, data={"name": "Gold (yearly)"}).get() is None
    assert chartmogul.Plan.retrieve(chartmogul_config, uuid=created.uuid).get().name == "Gold (yearly)"
    listed = chartmogul.Plan.all(chartmogul_config, data_source_uuid=ds.uuid, external_id="price_gold").get()
    assert [p.uuid for p in listed.plans] == [created.uuid]
    assert listed.has_more is False
    assert chartmogul.Plan.destroy(chartmogul_config, uuid=created.uuid).get() is None
    status, body = api_error(lambda: chartmogul.Plan.retrieve(chartmogul_config, uuid=created.uuid).get())
    assert (status, body) == (404, {"error": "Plan not found"})


def test_plan_validation(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    plan(chartmogul_config, ds.uuid, "price_1")
    status, body = api_error(lambda: plan(chartmogul_config, ds.uuid, "price_1"))
    assert (status, body) == (
        422,
        {"errors": {"external_id": "A plan with this identifier already exists in our system."}},
    )
    status, body = api_error(lambda: plan(chartmogul_config, ds.uuid, "price_2", unit="week"))
    assert status == 400 and body["param"] == "interval_unit"
    status, body = api_error(lambda: plan(chartmogul_config, ds.uuid, "price_3", count=0))
    assert (status, body) == (422, {"errors": {"interval_count": "must be greater than 0"}})
    status, body = api_error(
        lambda: chartmogul.Plan.create(
            chartmogul_config,
            data={"data_source_uuid": "ds_missing", "name": "x", "interval_count": 1, "interval_unit": "month"},
        ).get()
    )
    assert (status, body) == (422, {"errors": {"data_source_uuid": "Data source not found"}})


def test_a_plan_without_external_id_gets_one(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = chartmogul.Plan.create(
        chartmogul_config,
        data={"data_source_uuid": ds.uuid, "name": "Auto", "interval_count": 1, "interval_unit": "day"},
    ).get()
    assert isinstance(created.external_id, str) and created.external_id


def test_plan_list_pages_with_cursor(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    for index in range(5):
        plan(chartmogul_config, ds.uuid, f"price_{index}")
    seen: list[str] = []
    cursor = None
    for _ in range(10):  # bounded: 3 pages expected
        page = chartmogul.Plan.all(chartmogul_config, per_page=2, **({"cursor": cursor} if cursor else {})).get()
        seen += [p.external_id for p in page.plans]
        if not page.has_more:
            break
        cursor = page.cursor
    assert seen == [f"price_{index}" for index in range(5)]


def test_malformed_json_is_400(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    response = requests.post(
        chartmogul_emulator.api_url + "/plans",
        data=b'{"name": ',
        auth=(chartmogul_emulator.api_key, ""),
        headers={"content-type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_emptying_a_data_source_keeps_it(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    plan(chartmogul_config, ds.uuid)
    chartmogul.Customer.create(chartmogul_config, data={"data_source_uuid": ds.uuid, "external_id": "cus_1"}).get()
    emptied = requests.delete(
        f"{chartmogul_emulator.api_url}/data_sources/{ds.uuid}/all", auth=(chartmogul_emulator.api_key, ""), timeout=5
    )
    assert emptied.status_code == 204
    assert chartmogul.DataSource.retrieve(chartmogul_config, uuid=ds.uuid).get().name == ds.name
    assert chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds.uuid).get().entries == []
    assert chartmogul.Plan.all(chartmogul_config, data_source_uuid=ds.uuid).get().plans == []
