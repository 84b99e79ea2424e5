"""Customers through the unmodified client (docs/sources.md#cm-customers)."""

from __future__ import annotations

from typing import Any

import chartmogul
import requests

from localdev.chartmogul_emulator.running import RunningEmulator

from .helpers import api_error, customer, data_source, import_invoices, invoice, plan, subscription_line


def test_create_answers_the_recorded_shape(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = customer(
        chartmogul_config,
        ds.uuid,
        "cus_A",
        name="Acme",
        email="billing@acme.test",
        country="US",
        lead_created_at="2024-01-02",
        attributes={"tags": ["vip"], "custom": [{"type": "String", "key": "channel", "value": "web"}]},
    )
    assert created.uuid.startswith("cus_") and isinstance(created.id, int)
    assert (created.name, created.email, created.company) == ("Acme", "billing@acme.test", "")
    assert (created.status, created.mrr, created.arr, created.customer_since) == ("New Lead", 0, 0, None)
    assert created.external_ids == ["cus_A"] and created.data_source_uuids == [ds.uuid]
    assert created.lead_created_at.isoformat() == "2024-01-02T00:00:00+00:00"
    assert created.attributes.tags == ["vip"]
    assert created.attributes.custom == {"channel": "web"}
    raw = requests.get(
        f"{chartmogul_emulator.api_url}/customers/{created.uuid}", auth=(chartmogul_emulator.api_key, ""), timeout=5
    ).json()
    # docs/sources.md#cm-customers: hyphenated keys, "" rather than null for the client's non-nullable strings
    assert {"customer-since", "billing-system-type", "currency-sign", "chartmogul-url"} <= set(raw)
    assert raw["billing-system-type"] == "Import API"


def test_minimal_customer_never_has_null_name_email_company(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = customer(chartmogul_config, ds.uuid, "cus_min")
    assert (created.name, created.email, created.company) == ("", "", "")


def test_duplicate_and_missing_fields(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    customer(chartmogul_config, ds.uuid, "cus_dup")
    status, body = api_error(lambda: customer(chartmogul_config, ds.uuid, "cus_dup"))
    assert (status, body) == (
        422,
        {"errors": {"external_id": "The external ID for this customer already exists in our system."}},
    )
    status, body = api_error(
        lambda: chartmogul.Customer.create(chartmogul_config, data={"data_source_uuid": ds.uuid}).get()
    )
    assert (status, body) == (422, {"errors": {"external_id": "can't be blank"}})
    status, body = api_error(lambda: customer(chartmogul_config, "ds_missing", "cus_x"))
    assert (status, body) == (422, {"errors": {"data_source_uuid": "Data source not found"}})
    # the same external id in another data source is a different customer
    other = data_source(chartmogul_config, "Other")
    assert customer(chartmogul_config, other.uuid, "cus_dup").uuid


def test_wrong_custom_attribute_type_is_the_documented_400(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    status, body = api_error(
        lambda: customer(
            chartmogul_config, ds.uuid, "cus_c", attributes={"custom": [{"type": "Text", "key": "k", "value": "v"}]}
        )
    )
    # docs/sources.md#cm-validation: the recorded message, first offending parameter only
    assert (status, body) == (
        400,
        {"code": 400, "message": 'Parameter "custom[0][type]" does not have a valid value', "param": "custom[0][type]"},
    )


def test_list_filters_by_data_source_and_external_id(chartmogul_config: Any) -> None:
    ds_a, ds_b = data_source(chartmogul_config, "A"), data_source(chartmogul_config, "B")
    first = customer(chartmogul_config, ds_a.uuid, "cus_1")
    customer(chartmogul_config, ds_a.uuid, "cus_2")
    customer(chartmogul_config, ds_b.uuid, "cus_1")
    in_a = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds_a.uuid).get()
    assert [c.external_id for c in in_a.entries] == ["cus_1", "cus_2"] and in_a.has_more is False
    found = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds_a.uuid, external_id="cus_1").get()
    assert [c.uuid for c in found.entries] == [first.uuid]
    none = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds_a.uuid, external_id="cus_9").get()
    assert none.entries == [] and none.has_more is False


def test_per_page_is_capped_at_200(chartmogul_emulator: RunningEmulator, chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    with requests.Session() as session:
        session.auth = (chartmogul_emulator.api_key, "")
        for index in range(201):
            created = session.post(
                chartmogul_emulator.api_url + "/customers",
                json={"data_source_uuid": ds.uuid, "external_id": f"cus_{index:03d}"},
                timeout=5,
            )
            assert created.status_code == 201
    first = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds.uuid, per_page=1000).get()
    assert len(first.entries) == 200 and first.has_more is True
    rest = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds.uuid, cursor=first.cursor).get()
    assert [c.external_id for c in rest.entries] == ["cus_200"] and rest.has_more is False


def test_retrieve_update_delete(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = customer(chartmogul_config, ds.uuid, "cus_u", name="Old")
    chartmogul.CustomAttributes.add(
        chartmogul_config, uuid=created.uuid, data={"custom": [{"type": "Integer", "key": "seats", "value": 1}]}
    ).get()
    updated = chartmogul.Customer.modify(
        chartmogul_config,
        uuid=created.uuid,
        data={"name": "New", "email": "new@x.test", "city": "Berlin", "attributes": {"custom": {"seats": 3}}},
    ).get()
    assert (updated.name, updated.email, updated.city) == ("New", "new@x.test", "Berlin")
    assert updated.attributes.custom == {"seats": 3}
    assert chartmogul.Customer.retrieve(chartmogul_config, uuid=created.uuid).get().name == "New"
    assert chartmogul.Customer.destroy(chartmogul_config, uuid=created.uuid).get() is None
    status, body = api_error(lambda: chartmogul.Customer.retrieve(chartmogul_config, uuid=created.uuid).get())
    assert (status, body) == (404, {"error": "Customer not found"})


def test_a_custom_attribute_must_be_created_before_it_is_updated(
    chartmogul_emulator: RunningEmulator, chartmogul_config: Any
) -> None:
    # https://dev.chartmogul.com/reference/update-custom-attributes-of-customer: "Attribute must first be created
    # using the POST call" (the refusal's wording is the emulator's).
    ds = data_source(chartmogul_config)
    created = customer(chartmogul_config, ds.uuid, "cus_a")
    undeclared = {"attributes": {"custom": {"channel": "partner"}}}
    status, body = api_error(
        lambda: chartmogul.Customer.modify(chartmogul_config, uuid=created.uuid, data=undeclared).get()
    )
    assert status == 422 and "must first be created" in body["errors"]["custom"]
    status, _ = api_error(
        lambda: chartmogul.CustomAttributes.update(
            chartmogul_config, uuid=created.uuid, data={"custom": {"channel": "partner"}}
        ).get()
    )
    assert status == 422
    added = chartmogul.CustomAttributes.add(
        chartmogul_config, uuid=created.uuid, data={"custom": [{"type": "String", "key": "channel", "value": "ads"}]}
    ).get()
    assert added.custom == {"channel": "ads"}
    # created once, for the account: another customer may set it by update now
    other = customer(chartmogul_config, ds.uuid, "cus_b")
    updated = chartmogul.Customer.modify(chartmogul_config, uuid=other.uuid, data=undeclared).get()
    assert updated.attributes.custom == {"channel": "partner"}
    # created at customer creation too (the create call carries typed attributes)
    typed = {"custom": [{"type": "Boolean", "key": "pro", "value": True}]}
    third = chartmogul.Customer.create(
        chartmogul_config, data={"data_source_uuid": ds.uuid, "external_id": "cus_c", "attributes": typed}
    ).get()
    assert chartmogul.CustomAttributes.update(
        chartmogul_config, uuid=third.uuid, data={"custom": {"pro": False}}
    ).get().custom == {"pro": False}
    chartmogul_emulator.emulator.options.undeclared_custom_attributes = "ignore"
    ignored = chartmogul.Customer.modify(
        chartmogul_config, uuid=other.uuid, data={"attributes": {"custom": {"never_created": 1}}}
    ).get()
    assert ignored.attributes.custom == {"channel": "partner"}


def test_search_by_email(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    created = customer(chartmogul_config, ds.uuid, "cus_s", email="find@me.test")
    found = chartmogul.Customer.search(chartmogul_config, email="find@me.test").get()
    assert [c.uuid for c in found.entries] == [created.uuid]
    status, body = api_error(lambda: chartmogul.Customer.search(chartmogul_config, email="no@email.com").get())
    assert (status, body) == (
        404,
        {"code": 404, "message": 'Can\'t find any customers with email: "no@email.com"', "param": "email"},
    )


def test_merge_moves_invoices_and_ids(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    pro = plan(chartmogul_config, ds.uuid)
    source, target = customer(chartmogul_config, ds.uuid, "cus_from"), customer(chartmogul_config, ds.uuid, "cus_into")
    import_invoices(
        chartmogul_config,
        source.uuid,
        invoice("in_1", "2024-01-01", [subscription_line(pro.uuid, "2024-01-01", "2024-02-01", 5000)]),
    )
    merged = chartmogul.Customer.merge(
        chartmogul_config, data={"from": {"customer_uuid": source.uuid}, "into": {"customer_uuid": target.uuid}}
    ).get()
    assert merged is None  # docs/sources.md#cm-customers: 202 {}
    after = chartmogul.Customer.retrieve(chartmogul_config, uuid=target.uuid).get()
    assert after.external_ids == ["cus_into", "cus_from"]
    assert after.mrr == 5000
    assert [i.external_id for i in chartmogul.Invoice.all(chartmogul_config, uuid=target.uuid).get().invoices] == [
        "in_1"
    ]
    status, _ = api_error(lambda: chartmogul.Customer.retrieve(chartmogul_config, uuid=source.uuid).get())
    assert status == 404
    status, body = api_error(
        lambda: chartmogul.Customer.merge(
            chartmogul_config, data={"from": {"customer_uuid": "cus_nope"}, "into": {"customer_uuid": target.uuid}}
        ).get()
    )
    assert (status, body) == (404, {"error": "Customer not found"})


def test_list_filters_by_status(chartmogul_config: Any) -> None:
    ds = data_source(chartmogul_config)
    pro = plan(chartmogul_config, ds.uuid)
    paying, lead = customer(chartmogul_config, ds.uuid, "cus_paying"), customer(chartmogul_config, ds.uuid, "cus_lead")
    import_invoices(
        chartmogul_config,
        paying.uuid,
        invoice("in_1", "2024-01-01", [subscription_line(pro.uuid, "2024-01-01", "2024-02-01", 5000)]),
    )
    active = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds.uuid, status="Active").get()
    assert [c.uuid for c in active.entries] == [paying.uuid]
    leads = chartmogul.Customer.all(chartmogul_config, data_source_uuid=ds.uuid, status="New_Lead").get()
    assert [c.uuid for c in leads.entries] == [lead.uuid]
