"""The whole pipeline through the local runtime: the real handlers, moto built from template.yaml, and both
emulators over loopback. What a user would check: ChartMogul holds exactly the objects a correct import gives,
its MRR matches the billing system month by month, nothing is lost or duplicated, whatever the network does."""

import threading
from typing import Any

import pytest

from localdev.audit import audit_pipeline
from localdev.pipeline import LocalPipeline, PipelineOptions
from localdev.scenarios import Account
from localdev.stripe_emulator import StripeEmulatorHandle

pytestmark = pytest.mark.slow

FAST = PipelineOptions(stripe_rate_limit=None, chartmogul_rate_limit=None)


def assert_matches_ground_truth(pipeline: LocalPipeline, account: Account | StripeEmulatorHandle) -> None:
    """`account`: the generated account, or the Stripe emulator holding it (in a process of its own, the only one
    that knows what the steps changed)."""
    truth = account.ground_truth()
    audit = audit_pipeline(pipeline, truth)
    assert audit.missing_customers == []
    # Against Stripe's current data and against the generator's record: no difference at all.
    assert audit.differences == []
    assert audit.matches
    assert audit.customers_in_chartmogul == len(truth["customers"])
    for month in audit.months:
        assert month.chartmogul_customers == month.truth_customers == month.stripe_customers, month
        # Both sides round per line item as ChartMogul documents: the totals are equal to the cent.
        assert month.chartmogul_mrr == month.truth_mrr, month


def assert_dead_letter_queues_empty(pipeline: LocalPipeline) -> None:
    assert {queue: bodies for queue, bodies in pipeline.dead_letters().items() if bodies} == {}


def test_backfill_then_incremental_imports_exactly_the_ground_truth_and_a_rerun_writes_nothing(
    account: Account,
) -> None:
    with LocalPipeline(account, FAST) as pipeline:
        backfill = pipeline.backfill()
        # Every customer's whole snapshot, and before it the head of each one the customers list holds (the
        # deleted ones it does not: docs/architecture.md "Customer heads").
        live = sum(1 for customer in account.store.customers if customer.deleted_at is None)
        assert backfill.functions["TransformFunction"].records == len(account.scenarios) + live
        steps = pipeline.apply_demo_changes()
        assert [s for s in steps if "error" in s] == []
        incremental = pipeline.incremental()
        # Only the customers the steps touched (and any billed by the clock moving on) are exported again.
        assert 0 < incremental.functions["TransformFunction"].records < len(account.scenarios)
        assert_matches_ground_truth(pipeline, account)
        assert_dead_letter_queues_empty(pipeline)

        writes_before = pipeline.chartmogul_writes()
        pipeline.backfill()
        pipeline.incremental()
        assert pipeline.chartmogul_writes() == writes_before
        assert_matches_ground_truth(pipeline, account)


def test_chartmogul_faults_leave_the_same_final_state(account: Account) -> None:
    faults = PipelineOptions(
        stripe_rate_limit=None,
        chartmogul_rate_limit=None,
        chartmogul_faults="429:0.08,500:0.04,503:0.03,timeout:0.01,reset:0.02",
        fault_seed=3,
    )
    with LocalPipeline(account, faults) as pipeline:
        pipeline.backfill()
        pipeline.apply_demo_changes()
        pipeline.incremental()
        routes: dict[str, dict[str, int]] = pipeline.chartmogul.request_counts()["routes"]
        injected = sum(
            n for statuses in routes.values() for status, n in statuses.items() if not status.startswith("2")
        )
        assert injected > 10  # the faults really happened
        assert_matches_ground_truth(pipeline, account)
        assert_dead_letter_queues_empty(pipeline)


def test_a_crash_after_chartmogul_accepted_a_bundle_but_before_the_sqs_delete_duplicates_nothing(
    account: Account,
) -> None:
    with LocalPipeline(account, FAST) as pipeline:
        crashed: list[int] = []
        lock = threading.Lock()

        def crashing_once(real_upload: Any) -> Any:
            def upload_then_crash_once(event: dict[str, Any], context: Any) -> Any:
                response = real_upload(event, context)  # ChartMogul has the writes now
                with lock:
                    crash = not crashed
                    if crash:
                        crashed.append(len(event["Records"]))
                if crash:
                    raise RuntimeError("the Lambda died before returning: SQS will deliver the batch again")
                return response

            return upload_then_crash_once

        pipeline.stack.wrap_handler("UploadFunction", crashing_once)
        report = pipeline.backfill()
        upload = report.functions["UploadFunction"]
        assert crashed and upload.failed == crashed[0]
        assert upload.deliveries == upload.records + crashed[0]  # the crashed batch came again, once
        assert_matches_ground_truth(pipeline, account)
        assert_dead_letter_queues_empty(pipeline)


def test_records_chartmogul_refuses_wait_in_bad_records_with_the_reason_and_replay_after_the_fix(
    account: Account,
) -> None:
    from click.testing import CliRunner

    from chartmogul_sync.cli import main
    from chartmogul_sync.queues import BadRecord
    from localdev.fx import DEFAULT_RATES

    # An account whose ChartMogul refuses AUD (the emulator's stand-in for any permanent 4xx a user can fix).
    without_aud = {code: rate for code, rate in DEFAULT_RATES.items() if code != "AUD"}
    options = PipelineOptions(
        stripe_rate_limit=None, chartmogul_rate_limit=None, chartmogul_options={"rates": without_aud}
    )
    with LocalPipeline(account, options) as pipeline:
        pipeline.backfill()
        bad = [BadRecord.model_validate_json(body) for body in pipeline.dead_letters()["BadRecordsQueue"]]
        assert bad, "some customers bill in AUD"
        assert {record.stage for record in bad} == {"upload"}
        assert all("AUD" in (record.error_body or "") + record.reason for record in bad)
        refused = {record.customer_external_id for record in bad}
        audit = audit_pipeline(pipeline, account.ground_truth())
        # Each refused customer is named, and the audit says where its record waits.
        waiting = {d.customer for d in audit.differences if d.cause.value == "waiting in a dead-letter queue"}
        assert refused <= waiting
        assert not audit.matches

        pipeline.chartmogul.options.rates["AUD"] = DEFAULT_RATES["AUD"]  # the fix
        result = CliRunner().invoke(main, ["dlq", "replay", "bad-records"], env=pipeline.stack.environment)
        assert result.exit_code == 0, result.output
        pipeline.stack.drain()
        assert pipeline.dead_letters()["BadRecordsQueue"] == []
        assert_matches_ground_truth(pipeline, account)

        writes = pipeline.chartmogul_writes()
        again = CliRunner().invoke(main, ["dlq", "replay", "bad-records"], env=pipeline.stack.environment)
        assert again.exit_code == 0 and pipeline.chartmogul_writes() == writes  # nothing left to replay


def test_a_re_backfill_overlapping_an_incremental_sync_with_concurrent_uploads_and_faults_ends_at_the_truth(
    account: Account,
) -> None:
    """The production race: a re-backfill (bulk mode, snapshots as of its start) still uploading while Stripe
    changes and the schedule's incremental run (api mode, newer snapshots) uploads the same customers, with three
    upload instances at once and ChartMogul failing now and then. The newer version of every customer must win."""
    options = PipelineOptions(
        stripe_rate_limit=None,
        chartmogul_rate_limit=None,
        chartmogul_faults="429:0.05,500:0.03,503:0.02,reset:0.02",
        fault_seed=7,
        upload_concurrency=3,
    )
    with LocalPipeline(account, options) as pipeline:
        pipeline.backfill()
        pipeline.start_export({"mode": "backfill", "run_id": "re-backfill"})
        overlapped: list[str] = []

        def change_stripe_while_the_backfill_uploads(outcome: Any) -> None:
            if overlapped or outcome.function != "UploadFunction":
                return
            steps = pipeline.apply_demo_changes()
            assert [s for s in steps if "error" in s] == []
            pipeline.start_export(pipeline.incremental_event())
            overlapped.append(outcome.function)

        report = pipeline.drain(on_batch=change_stripe_while_the_backfill_uploads)
        assert overlapped, "the incremental run started while the re-backfill was uploading"
        uploads = report.batches_of("UploadFunction")
        assert len(uploads) > 3
        assert_matches_ground_truth(pipeline, account)
        assert_dead_letter_queues_empty(pipeline)
