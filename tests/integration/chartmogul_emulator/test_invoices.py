"""Invoice import, listing, deletion and transactions through the unmodified client (docs/sources.md#cm-invoices,
#cm-validation)."""

from __future__ import annotations

from typing import Any

import chartmogul
import pytest

from localdev.chartmogul_emulator.running import RunningEmulator

from .helpers import api_error, customer, data_source, import_invoices, invoice, plan, subscription_line

INVOICE_EXISTS = "The external ID for this invoice already exists in our system."
LINE_ITEM_EXISTS = "The external ID for this line item already exists in our system."


@pytest.fixture
def account(chartmogul_config: Any) -> dict[str, Any]:
    ds = data_source(chartmogul_config)
    return {
        "config": chartmogul_config,
        "ds": ds,
        "customer": customer(chartmogul_config, ds.uuid, "cus_1"),
        "plan": plan(chartmogul_config, ds.uuid, "price_1"),
    }


def full_invoice(plan_uuid: str) -> dict[str, Any]:
    """Every line item type and field, with inline transactions (docs/sources.md#cm-invoice-import)."""
    return invoice(
        "in_full",
        "2024-03-01 10:00:00",
        [
            subscription_line(
                plan_uuid,
                "2024-03-01",
                "2024-04-01",
                11900,
                external_id="il_sub",
                subscription_set_external_id="sub_set",
                quantity=2,
                discount_amount_in_cents=1000,
                discount_code="SPRING",
                discount_description="10 off",
                tax_amount_in_cents=1900,
                transaction_fees_in_cents=300,
                transaction_fees_currency="EUR",
                account_code="4000",
                event_order=1,
                prorated=False,
                description="Pro seats",
            ),
            {"type": "one_time", "amount_in_cents": 2500, "description": "Onboarding", "external_id": "il_one"},
            {
                "type": "trial",
                "subscription_external_id": "si_trial",
                "plan_uuid": plan_uuid,
                "service_period_start": "2024-02-15T00:00:00Z",
                "service_period_end": "2024-03-01T00:00:00Z",
                "amount_in_cents": 0,
            },
        ],
        due_date="2024-03-15",
        collection_method="automatic",
        transactions=[
            {"date": "2024-03-02T08:00:00+02:00", "type": "payment", "result": "failed", "external_id": "ch_1"},
            {
                "date": "2024-03-03",
                "type": "payment",
                "result": "successful",
                "external_id": "inpay_1",
                "amount_in_cents": 14400,
            },
        ],
    )


def test_import_answers_every_field(account: dict[str, Any]) -> None:
    result = import_invoices(account["config"], account["customer"].uuid, full_invoice(account["plan"].uuid))
    [stored] = result.invoices
    assert stored.uuid.startswith("inv_") and stored.external_id == "in_full" and stored.errors == {}
    assert (
        stored.date.isoformat() == "2024-03-01T10:00:00+00:00"
        and stored.due_date.isoformat() == "2024-03-15T00:00:00+00:00"
    )
    sub, one_time, trial = stored.line_items
    assert sub.subscription_uuid.startswith("sub_") and sub.subscription_external_id == "si_1"
    assert (sub.amount_in_cents, sub.quantity, sub.tax_amount_in_cents, sub.discount_amount_in_cents) == (
        11900,
        2,
        1900,
        1000,
    )
    assert (sub.discount_code, sub.transaction_fees_in_cents, sub.transaction_fees_currency) == ("SPRING", 300, "EUR")
    assert (sub.account_code, sub.event_order, sub.prorated, sub.subscription_set_external_id) == (
        "4000",
        1,
        False,
        "sub_set",
    )
    assert sub.service_period_end.isoformat() == "2024-04-01T00:00:00+00:00"
    # docs/sources.md#cm-invoice-import: numeric defaults are 0 (never null) on a sparse one_time line
    assert (one_time.type, one_time.quantity, one_time.tax_amount_in_cents, one_time.discount_code) == (
        "one_time",
        1,
        0,
        "",
    )
    assert trial.type == "trial" and trial.subscription_external_id == "si_trial"
    failed, paid = stored.transactions
    assert (failed.result, failed.date.isoformat()) == ("failed", "2024-03-02T06:00:00+00:00")  # offset → UTC
    assert (paid.amount_in_cents, failed.amount_in_cents) == (14400, None)


def test_unknown_customer_is_invoice_not_found(account: dict[str, Any]) -> None:
    status, body = api_error(
        lambda: import_invoices(account["config"], "cus_missing", full_invoice(account["plan"].uuid))
    )
    # docs/sources.md#cm-validation: ChartMogul's own misleading answer
    assert status == 404
    assert body == {
        "error": "Invoice not found",
        "error_details": [{"param": "invoice", "code": "invalid", "message": "Invoice not found"}],
    }


def test_duplicates_get_the_go_client_messages(account: dict[str, Any]) -> None:
    config, customer_uuid = account["config"], account["customer"].uuid
    import_invoices(config, customer_uuid, full_invoice(account["plan"].uuid))
    status, body = api_error(lambda: import_invoices(config, customer_uuid, full_invoice(account["plan"].uuid)))
    assert status == 422
    assert body == {
        "invoices": [
            {
                "external_id": "in_full",
                "errors": {
                    "external_id": INVOICE_EXISTS,
                    "line_items.external_id": LINE_ITEM_EXISTS,
                    "transactions.external_id": "has already been taken",
                },
            }
        ]
    }


PLAN = "<the account's plan>"


def _sub(**overrides: Any) -> dict[str, Any]:
    return {**subscription_line(PLAN, "2024-03-01", "2024-04-01", 100), **overrides}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"currency": None}, {"currency": "can't be blank"}),
        ({"currency": "JPY"}, {"currency": "the emulator has no exchange rate for JPY; start it with --rates"}),
        ({"date": None}, {"date": "can't be blank"}),
        ({"line_items": []}, {"line_items": "can't be blank"}),
        (
            {"line_items": [_sub(service_period_end="2024-03-01")]},
            {"line_items.service_period_end": "must be after the service period start"},
        ),
        ({"line_items": [_sub(plan_uuid=None)]}, {"line_items.plan_uuid": "can't be blank"}),
        (
            {"line_items": [_sub(subscription_external_id="")]},
            {"line_items.subscription_external_id": "can't be blank"},
        ),
        ({"line_items": [_sub(quantity=0)]}, {"line_items.quantity": "must be a non-zero integer"}),
        ({"line_items": [{"type": "one_time"}]}, {"line_items.amount_in_cents": "can't be blank"}),
        ({"transactions": [{"type": "payment", "result": "successful"}]}, {"transactions.date": "can't be blank"}),
    ],
)
def test_semantic_problems_are_422(account: dict[str, Any], change: dict[str, Any], expected: dict[str, str]) -> None:
    body = {**invoice("in_bad", "2024-03-01", [_sub()]), **change}
    body["line_items"] = [
        {**item, "plan_uuid": account["plan"].uuid} if item.get("plan_uuid") == PLAN else item
        for item in body["line_items"]
    ]
    status, answer = api_error(lambda: import_invoices(account["config"], account["customer"].uuid, body))
    assert (status, answer) == (422, {"invoices": [{"external_id": "in_bad", "errors": expected}]})


FUTURE = "2099-01-01"


@pytest.mark.parametrize(
    ("case", "level", "errors"),
    [
        ("future invoice date", "invoice", {"date": ["Date is in the future"]}),
        ("invalid currency", "invoice", {"currency": ["Currency is invalid", "Currency must be supported"]}),
        ("negative non-prorated amount", "line item", {"amount_in_cents": ["must be positive"]}),
        ("plan of another data source", "line item", {"plan_uuid": ["Plan not found"]}),
        ("future transaction", "transaction", {"date": ["is in the future"]}),
    ],
)
def test_documented_invalid_objects_are_stored_with_errors_and_make_no_mrr(
    account: dict[str, Any], case: str, level: str, errors: dict[str, list[str]]
) -> None:
    # chartmogul-python test/api/test_invoice.py and chartmogul-node test/chartmogul/invoice.js (SDK 4.9+): 201,
    # the object stored with an `errors` map.
    plan_uuid = account["plan"].uuid
    if case == "plan of another data source":
        plan_uuid = plan(account["config"], data_source(account["config"], "Other").uuid, "price_foreign").uuid
    line = subscription_line(plan_uuid, "2024-03-01", "2024-04-01", -100 if "negative" in case else 100)
    body = invoice(
        "in_x",
        FUTURE if case == "future invoice date" else "2024-03-01",
        [line],
        currency="XYZ" if case == "invalid currency" else "USD",
        transactions=[
            {"type": "payment", "result": "successful", "date": FUTURE if "transaction" in case else "2024-03-02"}
        ],
    )
    [stored] = import_invoices(account["config"], account["customer"].uuid, body).invoices  # 201, not 422
    found = {
        "invoice": stored.errors,
        "line item": getattr(stored.line_items[0], "errors", None),
        "transaction": getattr(stored.transactions[0], "errors", None),
    }
    assert {key: value for key, value in found.items() if value} == {level: errors}
    [listed] = chartmogul.Invoice.all(account["config"], uuid=account["customer"].uuid).get().invoices
    assert listed.external_id == "in_x"
    if level != "transaction":  # an invalid invoice or line is excluded from metrics
        assert chartmogul.Customer.retrieve(account["config"], uuid=account["customer"].uuid).get().mrr == 0


@pytest.mark.parametrize(
    ("invoice_change", "param"),
    [
        ({"date": "01/03/2024"}, "invoices[0][date]"),
        ({"line_items": [{"type": "annual", "amount_in_cents": 1}]}, "invoices[0][line_items][0][type]"),
        (
            {"line_items": [{"type": "one_time", "amount_in_cents": "12.50"}]},
            "invoices[0][line_items][0][amount_in_cents]",
        ),
        (
            {"transactions": [{"type": "charge", "result": "successful", "date": "2024-03-01"}]},
            "invoices[0][transactions][0][type]",
        ),
    ],
)
def test_schema_problems_are_400_naming_the_parameter(
    account: dict[str, Any], invoice_change: dict[str, Any], param: str
) -> None:
    body = {**invoice("in_400", "2024-03-01", [{"type": "one_time", "amount_in_cents": 1}]), **invoice_change}
    status, answer = api_error(lambda: import_invoices(account["config"], account["customer"].uuid, body))
    assert (status, answer["param"]) == (400, param)
    assert answer["message"] == f'Parameter "{param}" does not have a valid value'


@pytest.mark.parametrize(
    "date",
    [
        "2024-03-01",
        "2024-03-01 00:00:00",
        "2024-03-01T00:00:00Z",
        "2024-03-01T00:00:00.000Z",
        "2024-03-01T02:00:00+02:00",
    ],
)
def test_accepted_date_forms_normalise_to_utc(account: dict[str, Any], date: str) -> None:
    body = invoice("in_d", date, [{"type": "one_time", "amount_in_cents": 1}])
    [stored] = import_invoices(account["config"], account["customer"].uuid, body).invoices
    assert stored.date.isoformat() == "2024-03-01T00:00:00+00:00"


def test_atomic_batch_stores_nothing_when_one_invoice_is_invalid(account: dict[str, Any]) -> None:
    good = invoice("in_good", "2024-03-01", [{"type": "one_time", "amount_in_cents": 1}])
    bad = invoice("in_bad", "2024-03-01", [{"type": "one_time", "amount_in_cents": 1}], currency="JPY")
    status, answer = api_error(lambda: import_invoices(account["config"], account["customer"].uuid, good, bad))
    assert status == 422
    assert [entry["errors"] for entry in answer["invoices"]] == [
        {},
        {"currency": "the emulator has no exchange rate for JPY; start it with --rates"},
    ]
    assert chartmogul.Invoice.all(account["config"], uuid=account["customer"].uuid).get().invoices == []


def test_partial_batch_mode_keeps_the_valid_invoices(
    chartmogul_emulator: RunningEmulator, account: dict[str, Any]
) -> None:
    chartmogul_emulator.emulator.options.invoice_batch_mode = "partial"
    good = invoice("in_good", "2024-03-01", [{"type": "one_time", "amount_in_cents": 1}])
    bad = invoice("in_bad", "2024-03-01", [{"type": "one_time", "amount_in_cents": 1}], currency="JPY")
    status, answer = api_error(lambda: import_invoices(account["config"], account["customer"].uuid, good, bad))
    assert status == 422
    assert answer["invoices"][0]["uuid"].startswith("inv_") and answer["invoices"][1]["errors"]
    stored = chartmogul.Invoice.all(account["config"], uuid=account["customer"].uuid).get().invoices
    assert [i.external_id for i in stored] == ["in_good"]


def test_list_retrieve_and_delete(account: dict[str, Any]) -> None:
    config, ds, cus = account["config"], account["ds"], account["customer"]
    other = customer(config, ds.uuid, "cus_2")
    line = [{"type": "one_time", "amount_in_cents": 1}]
    first = import_invoices(
        config, cus.uuid, invoice("in_1", "2024-01-01", line), invoice("in_2", "2024-02-01", line)
    ).invoices[0]
    import_invoices(config, other.uuid, invoice("in_3", "2024-01-01", line))
    by_source = chartmogul.Invoice.all(config, data_source_uuid=ds.uuid).get()
    assert [i.external_id for i in by_source.invoices] == ["in_1", "in_2", "in_3"]
    by_customer = chartmogul.Invoice.all(config, customer_uuid=other.uuid).get()
    assert [i.external_id for i in by_customer.invoices] == ["in_3"]
    probe = chartmogul.Invoice.all(config, data_source_uuid=ds.uuid, external_id="in_2").get()
    assert [i.external_id for i in probe.invoices] == ["in_2"]
    per_customer = chartmogul.Invoice.all(config, uuid=cus.uuid, per_page=1).get()
    assert (per_customer.customer_uuid, per_customer.has_more, len(per_customer.invoices)) == (cus.uuid, True, 1)
    assert chartmogul.Invoice.retrieve(config, uuid=first.uuid).get().external_id == "in_1"
    assert chartmogul.Invoice.destroy(config, uuid=first.uuid).get() is None
    status, body = api_error(lambda: chartmogul.Invoice.retrieve(config, uuid=first.uuid).get())
    assert (status, body) == (404, {"error": "Invoice not found"})
    assert chartmogul.Invoice.destroy_all(config, data_source_uuid=ds.uuid, customer_uuid=cus.uuid).get() is None
    assert [i.external_id for i in chartmogul.Invoice.all(config, data_source_uuid=ds.uuid).get().invoices] == ["in_3"]


def test_transactions_on_an_existing_invoice(account: dict[str, Any]) -> None:
    config = account["config"]
    [stored] = import_invoices(
        config, account["customer"].uuid, invoice("in_t", "2024-03-01", [{"type": "one_time", "amount_in_cents": 900}])
    ).invoices
    refund = {
        "type": "refund",
        "result": "successful",
        "date": "2024-03-10",
        "external_id": "re_1",
        "amount_in_cents": 900,
    }
    created = chartmogul.Transaction.create(config, uuid=stored.uuid, data=refund).get()
    assert created.uuid.startswith("tr_") and (created.type, created.amount_in_cents) == ("refund", 900)
    assert [t.external_id for t in chartmogul.Invoice.retrieve(config, uuid=stored.uuid).get().transactions] == ["re_1"]
    status, body = api_error(lambda: chartmogul.Transaction.create(config, uuid=stored.uuid, data=refund).get())
    assert (status, body) == (422, {"errors": {"external_id": "has already been taken"}})
    status, body = api_error(lambda: chartmogul.Transaction.create(config, uuid="inv_missing", data=refund).get())
    assert (status, body) == (404, {"error": "Invoice not found"})
    status, body = api_error(
        lambda: chartmogul.Transaction.create(
            config, uuid=stored.uuid, data={"type": "refund", "result": "maybe", "date": "2024-03-10"}
        ).get()
    )
    assert (status, body["param"]) == (400, "transaction[result]")
