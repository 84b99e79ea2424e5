"""What the export handler takes from its surroundings, in one replaceable place.

In the cloud: the Stripe key from Secrets Manager, the wall clock, and continuations through Lambda's own
asynchronous invoke. Moto cannot run Lambda code (README "Running it locally"), so the local
runtime, tests and benchmarks replace the continuation (e.g. with the runtime's `invoke_async`) and the clock
(the Stripe emulator's). The handler module is imported under a per-runtime name; this module is the layer's,
shared by every importer, so a replacement here reaches the handler whatever its module is called.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .client import RetryPolicy, api_key_from_secrets_manager
from .run import Continuation, ExportLimits

ContinuationPort = Callable[[Continuation, Any], None]


def invoke_self_async(continuation: Continuation, context: Any, lambda_client: Any = None) -> None:
    """The cloud continuation: this same function, invoked asynchronously with the continuation event.

    Asynchronous, so this invocation ends now and the next one gets a full timeout; a failed continuation is
    retried by Lambda, then lands in the function's on-failure queue (template.yaml ExportFailedQueue).
    """
    if lambda_client is None:
        import boto3

        lambda_client = boto3.client("lambda")
    lambda_client.invoke(
        FunctionName=context.invoked_function_arn,
        InvocationType="Event",
        Payload=json.dumps(continuation.model_dump(mode="json")).encode(),
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ExportWiring:
    continuation: ContinuationPort = invoke_self_async
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    limits: ExportLimits = field(default_factory=ExportLimits)
    api_key: Callable[[str], str] = api_key_from_secrets_manager
    clock: Callable[[], datetime] = _utc_now


export_wiring = ExportWiring()
