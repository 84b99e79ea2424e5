"""The cloud continuation: Lambda's asynchronous invoke of the running function, checked with botocore's Stubber
(moto cannot run Lambda code)."""

import json
from types import SimpleNamespace

import boto3
from botocore.stub import Stubber

from chartmogul_sync.sources.stripe.run import Continuation
from chartmogul_sync.sources.stripe.wiring import invoke_self_async

FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:chartmogul-sync-export"


def test_a_continuation_invokes_this_function_asynchronously_with_the_continuation_event() -> None:
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    continuation = Continuation(resume="backfill", run_id="backfill-1")
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": FUNCTION_ARN,
                "InvocationType": "Event",
                "Payload": json.dumps({"mode": "continuation", "resume": "backfill", "run_id": "backfill-1"}).encode(),
            },
        )
        invoke_self_async(continuation, SimpleNamespace(invoked_function_arn=FUNCTION_ARN), lambda_client=client)
        stub.assert_no_pending_responses()
