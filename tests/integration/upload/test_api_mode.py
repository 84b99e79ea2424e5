"""Upload mode `api` end to end: upload queue → upload function → ChartMogul emulator, through the real client."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from chartmogul_sync.sinks.chartmogul.dlq import list_messages
from chartmogul_sync.sinks.chartmogul.idmap import IdMap
from localdev.aws.runtime import local_stack
from localdev.chartmogul_emulator import start

from ...unit.upload.bundles import SNAPSHOT_TIME, cancellation_event, customer_bundle, monthly_invoice
from .conftest import (
    EMULATOR_NOW,
    FAST,
    chartmogul_state,
    expected_state,
    requests_made,
    stack_environment,
    upload,
    writes_made,
)

LATER = SNAPSHOT_TIME + dt.timedelta(days=1)
CANCELLED = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def full_invoices(customer: str = "cus_alice"):
    return (
        [monthly_invoice(customer, 1, one_off=2500)]
        + [monthly_invoice(customer, m) for m in range(2, 5)]
        + [monthly_invoice(customer, 5, refund=4900)]
    )


INVOICES = full_invoices()


def full_bundle(customer: str = "cus_alice", **changes):
    """A customer with history: five months paid, a refund, a one-off setup fee, a cancellation and its event."""
    defaults = {
        "invoices": full_invoices(customer),
        "cancelled_at": CANCELLED,
        "events": [cancellation_event(customer, CANCELLED)],
    }
    return customer_bundle(customer, **{**defaults, **changes})


def test_a_bundle_applied_leaves_exactly_its_objects_in_chartmogul(stack, emulator):
    bundle = full_bundle()
    upload(stack, bundle)
    assert chartmogul_state(emulator) == expected_state(bundle)
    assert [e["external_id"] for e in emulator.emulator.store.docs("subscription_events")] == ["evt_cus_alice_cancel"]
    # all five invoices travelled in one request
    assert writes_made(emulator)["POST /v1/import/customers/{uuid}/invoices 201"] == 1
    assert stack.receive_all("BadRecordsQueue") == []


def test_applying_the_same_bundle_again_makes_no_request(stack, emulator):
    bundle = full_bundle()
    upload(stack, bundle)
    emulator.server.counter.reset()
    upload(stack, bundle)
    assert requests_made(emulator) == {}
    # Even with the applied-version record gone, the id map alone makes the diff empty: still no write.
    stack.clients.dynamodb.delete_item(
        TableName=stack.resource_name("StateTable"),
        Key={"pk": {"S": f"applied#{_data_source_uuid(emulator)}"}, "sk": {"S": "cus_alice"}},
    )
    upload(stack, bundle)
    assert writes_made(emulator) == {}
    assert chartmogul_state(emulator) == expected_state(bundle)


def test_an_older_bundle_is_skipped(stack, emulator):
    newer = full_bundle(snapshot_time=LATER, email="alice@new.example")
    upload(stack, newer)
    emulator.server.counter.reset()
    older = full_bundle(snapshot_time=SNAPSHOT_TIME, invoices=[monthly_invoice("cus_alice", 1)], cancelled_at=None)
    upload(stack, older)
    assert requests_made(emulator) == {}
    assert chartmogul_state(emulator) == expected_state(newer)


@pytest.mark.parametrize(
    ("change", "only_write"),
    [
        (
            {"invoices": [*full_bundle().invoices, monthly_invoice("cus_alice", 6)]},
            "POST /v1/import/customers/{uuid}/invoices 201",
        ),
        (
            {"invoices": [*full_bundle().invoices[:4], monthly_invoice("cus_alice", 5, refund=4900)]},
            None,  # the same refund as before: nothing to write
        ),
        (
            {"invoices": [*INVOICES[:3], monthly_invoice("cus_alice", 4, refund=1200), *INVOICES[4:]]},
            "POST /v1/import/invoices/{uuid}/transactions 201",
        ),
        ({"cancelled_at": dt.datetime(2025, 7, 15, tzinfo=dt.UTC)}, "PATCH /v1/import/subscriptions/{uuid} 202"),
        ({"email": "alice@new.example"}, "PATCH /v1/customers/{uuid} 200"),
    ],
    ids=["new-invoice", "nothing-new", "new-refund", "cancellation-moved", "email-changed"],
)
def test_a_newer_bundle_writes_only_what_changed(stack, emulator, change, only_write):
    upload(stack, full_bundle())
    emulator.server.counter.reset()
    newer = full_bundle(snapshot_time=LATER, **change)
    upload(stack, newer)
    assert writes_made(emulator) == ({only_write: 1} if only_write else {})
    assert chartmogul_state(emulator) == expected_state(newer)


def test_a_reactivated_subscription_loses_its_cancellation(stack, emulator):
    upload(stack, full_bundle())
    emulator.server.counter.reset()
    reactivated = full_bundle(snapshot_time=LATER, cancelled_at=None, events=[])
    upload(stack, reactivated)
    assert writes_made(emulator) == {"PATCH /v1/import/subscriptions/{uuid} 202": 1}
    assert chartmogul_state(emulator)["cancellations"] == []


def test_an_invoice_voided_after_import_is_removed(stack, emulator):
    upload(stack, full_bundle())
    emulator.server.counter.reset()
    voided = full_bundle(snapshot_time=LATER, invoices=INVOICES[:4], removed=["in_cus_alice_05"])
    upload(stack, voided)
    assert writes_made(emulator) == {"DELETE /v1/invoices/{uuid} 204": 1}
    assert chartmogul_state(emulator) == expected_state(voided)


def test_faults_in_chartmogul_change_nothing_in_the_end(emulator):
    customers = [f"cus_{n:02d}" for n in range(8)]
    first = [full_bundle(c) for c in customers]
    second = [
        full_bundle(c, snapshot_time=LATER, email=f"{c}@moved.example", invoices=[*b.invoices, monthly_invoice(c, 6)])
        for c, b in zip(customers, first, strict=True)
    ]
    with (
        start(
            now=EMULATOR_NOW, faults="429:0.12,500:0.05,503:0.05,timeout:0.03,reset:0.03", seed=7, fault_hold_seconds=3
        ) as faulty,
        local_stack(options=FAST, environment=stack_environment(faulty)) as stack,
    ):
        stack.put_secret_value("ChartMogulApiKeySecret", faulty.api_key)
        upload(stack, *first)
        upload(stack, *second)
        counts = faulty.request_counts()["routes"]
        assert stack.receive_all("UploadDeadLetterQueue") == []
        assert stack.receive_all("BadRecordsQueue") == []
        faulted = sum(n for statuses in counts.values() for status, n in statuses.items() if status[0] == "5")
        assert faulted + sum(s.get("429", 0) for s in counts.values()) > 0  # the faults did happen
        assert chartmogul_state(faulty) == expected_state(*second)
        assert len(faulty.emulator.store.docs("subscription_events")) == len(customers)


@pytest.mark.parametrize(
    ("crash_when", "duplicate_answered"),
    [
        (lambda known: not known.invoices, "POST /v1/customers 422"),
        (lambda known: bool(known.invoices), "POST /v1/import/customers/{uuid}/invoices 422"),
    ],
    ids=["after-the-customer-is-created", "after-the-invoices-are-imported"],
)
def test_a_crash_after_a_write_makes_no_duplicate_on_redelivery(
    stack, emulator, monkeypatch, crash_when, duplicate_answered
):
    original = IdMap.remember_customer
    crashed = []

    def crash_once(self, customer_external_id, known):
        if crash_when(known) and not crashed:
            crashed.append(customer_external_id)
            raise RuntimeError("the Lambda died between ChartMogul's answer and remembering it")
        return original(self, customer_external_id, known)

    monkeypatch.setattr(IdMap, "remember_customer", crash_once)
    bundle = full_bundle()
    upload(stack, bundle)
    assert crashed == ["cus_alice"]
    counts = requests_made(emulator)
    assert counts[duplicate_answered] == 1  # the redelivery met what the first delivery had written
    assert counts["POST /v1/import/customers/{uuid}/invoices 201"] == 1
    assert counts["POST /v1/customers 201"] == 1
    assert chartmogul_state(emulator) == expected_state(bundle)
    assert len(emulator.emulator.store.docs("subscription_events")) == 1


def test_a_crash_after_the_whole_batch_makes_no_duplicate_either(stack, emulator):
    calls = []
    lock = threading.Lock()

    def crashing_before_the_delete(real_handler):
        def handler(event, context):
            response = real_handler(event, context)
            with lock:
                calls.append(len(event["Records"]))
                first = len(calls) == 1
            if first:
                raise TimeoutError("Task timed out")  # Lambda stopped: SQS keeps and redelivers the batch
            return response

        return handler

    stack.wrap_handler("UploadFunction", crashing_before_the_delete)
    bundles = [full_bundle("cus_alice"), full_bundle("cus_bob")]
    upload(stack, *bundles)
    assert len(calls) >= 2
    assert chartmogul_state(emulator) == expected_state(*bundles)


def test_a_permanent_refusal_lands_on_bad_records_and_replays_after_the_fix(stack, emulator):
    from click.testing import CliRunner

    from chartmogul_sync.cli import main

    # ChartMogul refuses cancellation dates in its future (docs/sources.md#cm-subscriptions); this one is ahead of its
    # clock.
    emulator.emulator.options.now = dt.datetime(2025, 5, 15, tzinfo=dt.UTC)
    bundle = full_bundle(events=[])
    upload(stack, bundle)
    bad_records_url = stack.queue_url("BadRecordsQueue")
    bad = [m.bad_record for m in list_messages(stack.clients.sqs, bad_records_url)]
    assert len(bad) == 1 and bad[0] is not None
    assert bad[0].stage == "upload"
    assert bad[0].customer_external_id == "cus_alice"
    assert bad[0].object_id == "si_cus_alice"
    assert "must be in the past" in (bad[0].error_body or "")
    assert "must be in the past" in bad[0].reason

    runner = CliRunner()
    with _patched_env(stack.environment):
        listed = runner.invoke(main, ["dlq", "list", "bad-records", "--json"])
        assert listed.exit_code == 0, listed.output
        assert "must be in the past" in listed.output
        emulator.emulator.options.now = EMULATOR_NOW  # the fix: the date is in the past now
        replayed = runner.invoke(main, ["dlq", "replay", "bad-records"])
        assert replayed.exit_code == 0, replayed.output
        assert "1 replayed, 0 left" in replayed.output
    stack.drain()
    assert list_messages(stack.clients.sqs, bad_records_url) == []
    assert chartmogul_state(emulator) == expected_state(bundle)


def test_a_message_that_is_not_a_bundle_is_a_bad_record_naming_the_field(stack, emulator):
    body = json.loads(
        json.dumps(
            {
                "schema_version": 1,
                "kind": "customer_bundle",
                "customer_external_id": "cus_x",
                "snapshot_time": "2026-01-01T00:00:00Z",
                "correlation_id": "c",
                "payload": {**json.loads(full_bundle("cus_x").model_dump_json()), "customer": {"name": "X"}},
            }
        )
    )
    stack.send("UploadQueue", json.dumps(body))
    stack.drain()
    bad = [json.loads(m["Body"]) for m in stack.receive_all("BadRecordsQueue")]
    assert [(b["customer_external_id"], b["field"]) for b in bad] == [("cus_x", "payload.customer.external_id")]
    assert requests_made(emulator) == {}


def _data_source_uuid(emulator) -> str:
    return emulator.emulator.store.docs("data_sources")[0]["uuid"]


class _patched_env:
    """The functions' environment for the command line (queue URLs), restored afterwards."""

    def __init__(self, variables: dict[str, str]) -> None:
        self._variables = variables

    def __enter__(self) -> None:
        from chartmogul_sync.config import get_settings
        from localdev.aws.lambda_model import patched_environ

        self._patch = patched_environ(self._variables)
        self._patch.__enter__()
        get_settings.cache_clear()

    def __exit__(self, *exc: object) -> None:
        from chartmogul_sync.config import get_settings

        self._patch.__exit__(*exc)
        get_settings.cache_clear()


def test_a_refused_api_key_sends_records_to_the_dlq_and_a_replay_imports_them_once_fixed(stack, emulator):
    from aws_lambda_powertools.utilities import parameters
    from click.testing import CliRunner

    from chartmogul_sync.cli import main

    stack.put_secret_value("ChartMogulApiKeySecret", "an-old-revoked-key")
    parameters.clear_caches()
    bundles = [full_bundle("cus_alice"), full_bundle("cus_bob")]
    upload(stack, *bundles)
    assert chartmogul_state(emulator)["customers"] == []
    assert requests_made(emulator).get("GET /v1/data_sources 401", 0) >= 5  # retried by SQS, not in a tight loop

    runner = CliRunner()
    with _patched_env(stack.environment):
        listed = runner.invoke(main, ["dlq", "list", "upload-dlq", "--json"])
        assert listed.exit_code == 0, listed.output
        rows = [json.loads(line) for line in listed.output.splitlines()]
        assert sorted(r["customer_external_id"] for r in rows) == ["cus_alice", "cus_bob"]
        assert all(r["kind"] == "customer_bundle" and r["receive_count"] >= 1 for r in rows)
        # Each dead letter says why it died: the last failure the upload function recorded for its message id.
        assert all(r["stage"] == "upload" and "401" in r["reason"] for r in rows), rows

        stack.put_secret_value("ChartMogulApiKeySecret", emulator.api_key)  # the fix
        parameters.clear_caches()  # in Lambda: the 5-minute secret cache expiring
        replayed = runner.invoke(main, ["dlq", "replay", "upload-dlq"])
        assert replayed.exit_code == 0, replayed.output
        assert "2 replayed, 0 left" in replayed.output
    stack.drain()
    assert stack.receive_all("UploadDeadLetterQueue") == []
    assert chartmogul_state(emulator) == expected_state(*bundles)


def test_a_customer_deleted_in_stripe_with_delete_configured_is_deleted_from_chartmogul(stack, emulator):
    upload(stack, full_bundle("cus_alice"), full_bundle("cus_bob"))
    emulator.server.counter.reset()
    deleted = customer_bundle("cus_alice", invoices=[], snapshot_time=LATER).model_copy(
        update={"deleted_in_source": True}
    )
    upload(stack, deleted)
    upload(stack, deleted)  # again: nothing left to do
    assert writes_made(emulator) == {"DELETE /v1/customers/{uuid} 204": 1}
    state = chartmogul_state(emulator)
    assert [c[0] for c in state["customers"]] == ["cus_bob"]
    assert {i[0] for i in state["invoices"]} == {"cus_bob"}


def test_a_cancellation_of_a_subscription_chartmogul_never_billed_is_skipped_not_failed(stack, emulator):
    from chartmogul_sync.models import Cancellation

    ghost = Cancellation(subscription_external_id="si_only_on_void_invoices", cancellation_dates=[CANCELLED])
    bundle = full_bundle(cancellations=[ghost], events=[])
    upload(stack, bundle)
    assert stack.receive_all("BadRecordsQueue") == [] and stack.receive_all("UploadDeadLetterQueue") == []
    state = chartmogul_state(emulator)
    assert state["cancellations"] == []
    assert state["invoices"] == expected_state(bundle)["invoices"]


def test_listing_a_live_work_queue_is_refused_and_moves_nothing(stack, emulator):
    from click.testing import CliRunner

    from chartmogul_sync.cli import main
    from chartmogul_sync.models import UploadMessage

    bundle = full_bundle("cus_alice")
    message = UploadMessage(
        customer_external_id="cus_alice", snapshot_time=bundle.snapshot_time, correlation_id="run-1", payload=bundle
    )
    stack.send("UploadQueue", message.model_dump_json(exclude_none=True))
    runner = CliRunner()
    with _patched_env(stack.environment):
        for _ in range(6):  # more listings than the queue's maxReceiveCount (5)
            refused = runner.invoke(main, ["dlq", "list", stack.queue_url("UploadQueue")])
            assert refused.exit_code != 0 and "work queue" in refused.output
    assert stack.receive_all("UploadDeadLetterQueue") == []
    stack.drain()
    assert chartmogul_state(emulator) == expected_state(bundle)


@pytest.mark.parametrize("mode", ["api", "bulk"])
def test_the_customers_of_a_batch_are_applied_side_by_side(stack, emulator, mode):
    """With 100 ms per ChartMogul request, the customers of one batch are written concurrently (up to the instance's
    share of the 20 connections), and ChartMogul ends with exactly their objects."""
    emulator.server.set_latency(0.1)
    bundles = [full_bundle(f"cus_{name}") for name in ("ann", "bob", "cid", "dan", "eve", "fay")]
    upload(stack, *bundles, mode=mode)
    assert chartmogul_state(emulator) == expected_state(*bundles)
    assert emulator.request_counts()["peak_requests_in_progress"] > 1
    assert stack.receive_all("BadRecordsQueue") == []
