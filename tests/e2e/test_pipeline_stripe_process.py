"""The local pipeline with the Stripe emulator in an OS process of its own (what the backfill benchmark's
`--stripe-process` runs): the child regenerates the account from its parameters, the demo's changes and the clock
reach it over its admin endpoints, and the import matches its ground truth."""

import os

import pytest

from localdev.pipeline import LocalPipeline, PipelineOptions
from localdev.scenarios import generate_account
from localdev.stripe_emulator import ProcessStripeEmulator
from tests.e2e.test_pipeline import assert_dead_letter_queues_empty, assert_matches_ground_truth

pytestmark = pytest.mark.slow


def test_backfill_and_incremental_through_a_stripe_emulator_process_import_the_ground_truth() -> None:
    account = generate_account(customers=30, months=6, seed=13)
    options = PipelineOptions(stripe_rate_limit=None, chartmogul_rate_limit=None, stripe_process=True)
    with LocalPipeline(account, options) as pipeline:
        emulator = pipeline.stripe
        assert isinstance(emulator, ProcessStripeEmulator)
        assert emulator.pid != os.getpid()
        backfill = pipeline.backfill()
        # Every customer's whole snapshot, and before it the head of each one the customers list holds (the
        # deleted ones it does not: docs/architecture.md "Customer heads").
        live = sum(1 for customer in account.store.customers if customer.deleted_at is None)
        assert backfill.functions["TransformFunction"].records == len(account.scenarios) + live
        assert backfill.stripe_requests > 0
        before = emulator.clock.now
        steps = pipeline.apply_demo_changes()
        assert [s for s in steps if "error" in s] == []
        # The steps ran in the child (its clock moved on two days and some); the pipeline's "now" is its clock.
        assert emulator.clock.now >= before + 2 * 86_400
        assert pipeline.stripe_now().timestamp() == emulator.clock.now
        assert pipeline.chartmogul.options.now == pipeline.stripe_now()
        incremental = pipeline.incremental()
        changed = {step["step"]["customer"] for step in steps if "customer" in step["step"]}
        # The changed customers, and only some of all, are exported again (the new ones included).
        assert 0 < incremental.functions["TransformFunction"].records < len(account.scenarios)
        assert incremental.functions["TransformFunction"].records >= len(changed)
        # The truth of the account as the child holds it now (the Account given above no longer changes).
        assert_matches_ground_truth(pipeline, emulator)
        assert_dead_letter_queues_empty(pipeline)


def test_an_account_changed_before_the_pipeline_started_is_refused_not_served_stale() -> None:
    account = generate_account(customers=5, months=2, seed=13)
    account.apply_step({"kind": "new_customer", "plan": "Pro", "interval": "monthly", "currency": "usd"})
    with (
        pytest.raises(RuntimeError, match=r"serves another account than the one given \(.*customers"),
        LocalPipeline(account, PipelineOptions(stripe_process=True)),
    ):
        pass  # pragma: no cover
