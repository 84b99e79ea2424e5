"""The local pipeline with the ChartMogul emulator in an OS process of its own (what the backfill benchmark's
`--chartmogul-process` runs): the same import, the clock kept in step with Stripe's, counts read over HTTP."""

import os

import pytest

from localdev.chartmogul_emulator import ProcessEmulator
from localdev.pipeline import LocalPipeline, PipelineOptions
from localdev.scenarios import generate_account
from tests.e2e.test_pipeline import assert_dead_letter_queues_empty, assert_matches_ground_truth

pytestmark = pytest.mark.slow


def test_backfill_and_incremental_through_a_chartmogul_emulator_process_import_the_ground_truth() -> None:
    account = generate_account(customers=4, months=12, seed=5)
    options = PipelineOptions(stripe_rate_limit=None, chartmogul_rate_limit=None, chartmogul_process=True)
    with LocalPipeline(account, options) as pipeline:
        emulator = pipeline.chartmogul
        assert isinstance(emulator, ProcessEmulator)
        assert emulator.pid != os.getpid()
        backfill = pipeline.backfill()
        assert backfill.chartmogul_requests > 0
        steps = pipeline.apply_steps(
            [
                {"kind": "new_customer", "plan": "Pro", "interval": "monthly", "currency": "usd"},
                {"kind": "advance", "days": 3},
            ]
        )
        assert [s for s in steps if "error" in s] == []
        # Stripe's simulated clock moved on three days; the emulator's follows it (customer MRR and status, "in
        # the past" checks).
        assert emulator.clock() == pipeline.stripe_now()
        incremental = pipeline.incremental()
        assert incremental.functions["ExportFunction"].records > 0
        assert incremental.chartmogul_requests > 0
        assert_matches_ground_truth(pipeline, account)
        assert_dead_letter_queues_empty(pipeline)
