"""Error bodies, bulk payload packing and status reading, and the limiter: pure parts of the upload."""

import itertools
import json

import pytest

from chartmogul_sync.sinks.chartmogul.bulk import (
    customer_records,
    customer_statuses,
    pack_payloads,
    plans_status,
)
from chartmogul_sync.sinks.chartmogul.client import error_details, is_duplicate_only
from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter, OutOfTime

from .bundles import PRO_YEARLY, customer_bundle

# ---------------------------------------------------------------- error bodies (docs/sources.md#cm-errors shapes)


def test_a_duplicate_customer_is_recognised():
    body = '{"errors":{"external_id":"The external ID for this customer already exists in our system."}}'
    details = error_details(body)
    assert [(d.field, d.object_id) for d in details] == [("external_id", None)]
    assert is_duplicate_only(details)


def test_per_invoice_errors_name_the_invoice_and_the_field():
    body = json.dumps(
        {
            "invoices": [
                {"external_id": "in_1", "errors": {}},
                {"external_id": "in_2", "errors": {"line_items.plan_uuid": ["Plan not found"]}},
            ]
        }
    )
    details = error_details(body)
    assert [(d.object_id, d.field, d.message) for d in details] == [("in_2", "line_items.plan_uuid", "Plan not found")]
    assert not is_duplicate_only(details)


LINE_EXISTS = "The external ID for this line item already exists in our system."
INVOICE_EXISTS = "The external ID for this invoice already exists in our system."


def test_a_line_or_transaction_duplicate_of_a_new_invoice_is_not_already_imported():
    # chartmogul-go `IsInvoiceAndItsEntitiesAlreadyExist`: only with the invoice itself there is it a replay.
    new_invoice = {"line_items.external_id": LINE_EXISTS, "transactions.external_id": "has already been taken"}
    body = json.dumps({"invoices": [{"external_id": "in_1", "errors": new_invoice}]})
    assert not is_duplicate_only(error_details(body))
    assert not is_duplicate_only(error_details(json.dumps({"errors": new_invoice})))
    replay = {"external_id": INVOICE_EXISTS, **new_invoice}
    assert is_duplicate_only(error_details(json.dumps({"invoices": [{"external_id": "in_1", "errors": replay}]})))
    assert is_duplicate_only(error_details(json.dumps({"errors": replay})))
    # a transaction added to an existing invoice on its own (POST /import/invoices/{uuid}/transactions)
    assert is_duplicate_only(error_details('{"errors":{"external_id":"has already been taken"}}'))


def test_duplicates_mixed_with_a_real_error_are_not_a_duplicate():
    body = json.dumps(
        {
            "invoices": [
                {"external_id": "in_1", "errors": {"external_id": "The external ID for this invoice already exists"}},
                {"external_id": "in_2", "errors": {"currency": "Currency is invalid"}},
            ]
        }
    )
    assert not is_duplicate_only(error_details(body))


def test_other_generations_of_error_bodies_are_read():
    assert error_details('{"code":400,"message":"Parameter \\"x\\" is bad","param":"x"}')[0].field == "x"
    not_found = error_details('{"error":"Invoice not found","error_details":[{"param":"invoice","message":"nope"}]}')
    assert [(d.field, d.message) for d in not_found] == [("invoice", "nope")]
    rails = error_details('{"name":["Name can\'t be blank"]}')
    assert [(d.field, d.message) for d in rails] == [("name", "Name can't be blank")]
    assert error_details("500 Internal Server Error")[0].message == "500 Internal Server Error"
    assert error_details("") == []


# ---------------------------------------------------------------- bulk payloads


def test_a_customer_record_set_is_flat_and_cross_referenced_by_external_id():
    records = customer_records(customer_bundle(months=2, tags=["vip"]))
    assert [c["external_id"] for c in records["customers"]] == ["cus_alice"]
    # docs/sources.md#cm-bulk-import: the bulk format has no attributes
    assert "attributes" not in records["customers"][0]
    assert [i["customer_external_id"] for i in records["invoices"]] == ["cus_alice", "cus_alice"]
    assert {li["invoice_external_id"] for li in records["line_items"]} == {"in_cus_alice_01", "in_cus_alice_02"}
    assert all(li["plan_external_id"] == "price_pro_m" for li in records["line_items"])
    assert [t["invoice_external_id"] for t in records["transactions"]] == ["in_cus_alice_01", "in_cus_alice_02"]


def test_payloads_respect_the_size_and_customer_limits_and_send_each_plan_once():
    bundles = [customer_bundle(f"cus_{n:03d}", months=12) for n in range(30)]
    one_customer_bytes = len(json.dumps(customer_records(bundles[0]), separators=(",", ":")))
    payloads, too_big = pack_payloads(bundles, known_plans=[], external_id_prefix="t", max_bytes=one_customer_bytes * 4)
    assert too_big == []
    assert sum(len(p.bundles) for p in payloads) == 30
    for payload in payloads:
        assert len(json.dumps(payload.body(), separators=(",", ":"))) <= one_customer_bytes * 4
    plans_sent = [p for payload in payloads for p in payload.plans]
    assert plans_sent == ["price_pro_m"]  # with the first import that needs it, never again
    by_count, _ = pack_payloads(bundles, known_plans=[], external_id_prefix="t", max_customers=7)
    assert [len(p.bundles) for p in by_count] == [7, 7, 7, 7, 2]


def test_known_plans_are_not_sent_and_an_oversized_customer_is_set_aside():
    big = customer_bundle("cus_big", months=24, plans=[PRO_YEARLY, *customer_bundle().plans])
    small = customer_bundle("cus_small")
    payloads, too_big = pack_payloads([big, small], known_plans=["price_pro_m"], external_id_prefix="t", max_bytes=4000)
    assert [b.customer.external_id for b in too_big] == ["cus_big"]
    assert [list(p.plans) for p in payloads] == [[]]


def test_statuses_of_a_finished_import_per_customer():
    details = {
        "plans": {"status": "imported"},
        "cus_ok": {"status": "imported", "invoices": {"status": "imported"}, "customers": {"status": "imported"}},
        "cus_bad": {
            "status": "failed",
            "invoices": {"status": "failed", "errors": ["in_1: currency is not supported"]},
        },
        "cus_dup": {"status": "failed", "errors": ["The external ID for this customer already exists in our system."]},
    }
    statuses = customer_statuses(details, ["cus_ok", "cus_bad", "cus_dup", "cus_missing"])
    assert statuses["cus_ok"] is not None and statuses["cus_ok"].imported
    assert statuses["cus_bad"] is not None and not statuses["cus_bad"].imported
    assert statuses["cus_bad"].errors == ("invoices: in_1: currency is not supported",)
    assert statuses["cus_dup"] is not None and statuses["cus_dup"].only_duplicates
    assert statuses["cus_missing"] is None
    plans = plans_status(details)
    assert plans is not None and plans.imported


# ---------------------------------------------------------------- the limiter (simulated clock: no sleeping)


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_requests_are_spaced_to_the_rate_share():
    clock = SimulatedClock()
    limiter = ChartMogulLimiter(requests_per_second=8, max_connections=4, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(17):
        with limiter.slot():
            starts.append(clock.now)
    # 17 requests at 8/s: the first at once, then one every 1/8 s → 2 s after the first
    assert starts[-1] - starts[0] == pytest.approx(2.0)
    assert all(later - earlier >= 0.125 - 1e-9 for earlier, later in itertools.pairwise(starts))


def test_a_slot_that_would_start_after_the_deadline_is_refused():
    clock = SimulatedClock()
    limiter = ChartMogulLimiter(requests_per_second=1, max_connections=1, clock=clock, sleep=clock.sleep)
    with limiter.slot(deadline=clock.now + 10):
        pass
    with pytest.raises(OutOfTime):  # the next start is 1 s away, the deadline half a second
        limiter.slot(deadline=clock.now + 0.5).__enter__()


def test_the_share_divides_the_account_limits_by_the_concurrency():
    from chartmogul_sync.config import Settings

    limiter = ChartMogulLimiter.share_of_account(Settings(upload_max_concurrency=5))
    assert limiter.requests_per_second == 8.0
    assert limiter.max_connections == 4
    assert ChartMogulLimiter.share_of_account(Settings(upload_max_concurrency=1)).max_connections == 20
