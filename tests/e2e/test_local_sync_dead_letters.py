"""`cmsync sync --local` reports what waits in every terminal queue with its reason, as `cmsync dlq list` reads
that queue: a failed audit's record in audit-failed as the audit's, a DLQ record with the last failure its
function recorded, and that reason still there on the next run, after the record was put back under a new SQS
message id.

The sync runs as a user runs it (`cmsync` with the keys and endpoints in the environment) against the Stripe and
ChartMogul emulators on loopback; the state directory holds what an earlier run left there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from chartmogul_sync.cli import main
from chartmogul_sync.failures import FAILURE_SK, FailureLedger, RecordFailure
from chartmogul_sync.queues import Stage
from localdev import chartmogul_emulator, stripe_emulator
from localdev.scenarios import Account, generate_account

pytestmark = pytest.mark.slow

# Lambda's on-failure record of the scheduled audit that timed out (AuditFunction's destination, AuditFailedQueue;
# https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html).
FAILED_AUDIT = {
    "version": "1.0",
    "timestamp": "2026-12-01T06:15:02.000Z",
    "requestContext": {
        "requestId": "req-audit-1",
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:chartmogul-sync-AuditFunction-1A2B:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": {"scheduled": "daily audit"},
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
    "responsePayload": None,
}
AUDIT_REASON = (
    "audit invocation failed (RetriesExhausted after 3 attempt(s)): Unhandled function error, no error message "
    "(a timeout or out-of-memory leaves none)"
)
UPLOAD_FAILURE = "ChartMogulServerError: ChartMogul answered 503 five times"


@pytest.fixture
def account() -> Account:
    return generate_account(customers=2, months=2, seed=5, now=int(time.time()))


@pytest.fixture
def env(account: Account) -> Iterator[dict[str, str]]:
    with (
        stripe_emulator.start(account, follow_wall_clock=True) as stripe,
        chartmogul_emulator.start(rate_limit=None) as chartmogul,
    ):
        yield {
            "STRIPE_API_BASE": stripe.base_url,
            "STRIPE_API_KEY": "sk_test_operator",
            "CHARTMOGUL_API_URL": chartmogul.api_url,
            "CHARTMOGUL_API_KEY": chartmogul.api_key,
        }


def sync(env: dict[str, str], state: Path, customer: str, *extra: str) -> Result:
    args = ["sync", "--local", "--mode", "customer", "--customer", customer, "--state-dir", str(state), *extra]
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_every_terminal_queue_s_records_are_reported_with_their_reasons_across_runs(
    account: Account, env: dict[str, str], tmp_path: Path
) -> None:
    # What an earlier run left: a failed audit in audit-failed, and a bundle in upload-dlq with the failure the
    # upload function recorded for its message id in the state table.
    state = tmp_path / "state"
    state.mkdir()
    failure = RecordFailure(
        message_id="m-earlier",
        stage=Stage.UPLOAD,
        reason=UPLOAD_FAILURE,
        error_type="ChartMogulServerError",
        customer_external_id="cus_waiting",
        receive_count=5,
    )
    item = {"pk": FailureLedger.partition_key("m-earlier"), "sk": FAILURE_SK, "failure": failure.model_dump_json()}
    (state / "state.json").write_text(json.dumps({"format": "chartmogul-sync/state/1", "items": [item]}))
    bundle = json.dumps({"kind": "customer_bundle", "customer_external_id": "cus_waiting"})
    (state / "dead-letters.json").write_text(
        json.dumps(
            [
                {"queue": "audit-failed", "id": "m-audit", "body": json.dumps(FAILED_AUDIT)},
                {"queue": "upload-dlq", "id": "m-earlier", "body": bundle},
            ]
        )
    )
    customer = sorted(account.ground_truth()["customers"])[0]

    first = sync(env, state, customer, "--json")

    assert first.exit_code == 1, first.output  # records wait for a person
    reported = {letter["queue"]: letter for letter in json.loads(first.stdout)["dead_letters"]}
    assert set(reported) == {"audit-failed", "upload-dlq"}
    assert reported["audit-failed"]["reason"] == AUDIT_REASON
    assert reported["upload-dlq"]["customer_external_id"] == "cus_waiting"
    upload_reason = reported["upload-dlq"]["reason"]
    assert upload_reason.startswith("last failure in upload") and UPLOAD_FAILURE in upload_reason
    saved: list[dict[str, Any]] = json.loads((state / "dead-letters.json").read_text())
    assert {letter["queue"]: letter["reason"] for letter in saved} == {
        queue: letter["reason"] for queue, letter in reported.items()
    }
    assert "m-earlier" not in {letter["id"] for letter in saved}  # put back in its queue: a new message id

    # The next run puts them back again and reads the same reasons; the table says them too.
    second = sync(env, state, customer)

    assert second.exit_code == 1, second.output
    assert "audit invocation failed" in second.output and "export invocation failed" not in second.output
    again = {letter["queue"]: letter["reason"] for letter in json.loads((state / "dead-letters.json").read_text())}
    assert again == {queue: letter["reason"] for queue, letter in reported.items()}
    status = CliRunner().invoke(main, ["status", "--state-dir", str(state), "--json"], env=env)
    assert status.exit_code == 1 and json.loads(status.stdout)["queue_depths"]["audit-failed"] == 1
