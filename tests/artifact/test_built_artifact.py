"""The artifact `sam build` made, run as Lambda would run it: each function imported from the build output with
only its code, the layer and boto3 on the path (invoke_built.py), on the events/ samples, against the stack in
a moto server and the emulators over loopback HTTP.

What this catches that the in-process tests cannot: a dependency missing from the layer (or one the layer
ships that the runtime already has), a handler importing something only the development environment has, a
built template whose code locations do not match its functions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import chartmogul
import pytest

from localdev import chartmogul_emulator
from localdev.aws.runtime import EVENTS_DIR, LocalStack, local_stack
from localdev.aws.template import LAYER_TYPE, Template
from localdev.scenarios import generate_account
from localdev.stripe_emulator import RunningStripeEmulator
from localdev.stripe_emulator import start as start_stripe

from .invoke_built import RESULT_MARKER

BUILD_DIR = Path(os.environ.get("CMSYNC_SMOKE_BUILD_DIR", ".aws-sam/smoke")).resolve()
RUNNER = Path(__file__).with_name("invoke_built.py")
# What the Lambda Python runtime provides beside the function and its layers: boto3 and what it needs.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")
STRIPE_KEY = "sk_test_smoke"
INVOKE_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def built() -> Template:
    template = BUILD_DIR / "template.yaml"
    assert template.is_file(), f"no build at {BUILD_DIR}: run `make smoke-build`"
    return Template.load(template)


@pytest.fixture(scope="module")
def layer_dir(built: Template) -> Path:
    (layer,) = built.other_resources(LAYER_TYPE).values()
    return (built.base_dir / str(layer.properties["ContentUri"]) / "python").resolve()


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """boto3 as the Lambda runtime provides it: links to the development environment's copies."""
    site_packages = Path(boto3.__file__).resolve().parent.parent
    directory = tmp_path_factory.mktemp("lambda-runtime")
    for name in RUNTIME_PACKAGES:
        (directory / name).symlink_to(site_packages / name)
    return directory


@pytest.fixture
def stack(built: Template) -> Iterator[LocalStack]:
    with local_stack(built, backend="server") as local:
        yield local


@pytest.fixture
def chartmogul_api() -> Iterator[chartmogul_emulator.RunningEmulator]:
    with chartmogul_emulator.start(rate_limit=None, max_connections=None) as emulator:
        yield emulator


@pytest.fixture
def stripe_api() -> Iterator[RunningStripeEmulator]:
    with start_stripe(generate_account(customers=3, months=2, seed=11)) as emulator:
        yield emulator


def invoke(
    stack: LocalStack, function: str, event: dict[str, Any], layer_dir: Path, runtime_dir: Path, **env: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One invocation in a fresh process; returns the result and the JSON lines it printed (logs, metrics)."""
    local = stack.function(function)
    request = {
        "code_dir": str(local.spec.code_dir),
        "layer_dir": str(layer_dir),
        "runtime_dir": str(runtime_dir),
        "handler": local.spec.handler,
        "function_name": local.name,
        "function_arn": local.arn,
        "memory_mb": local.spec.memory_size,
        "timeout_s": local.spec.timeout,
        "event": event,
    }
    request_file = runtime_dir.parent / f"{function}-request.json"
    request_file.write_text(json.dumps(request))
    environment = {
        **local.environment,
        **env,
        "AWS_ENDPOINT_URL": str(stack.endpoint_url),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    done = subprocess.run(
        [sys.executable, "-S", "-E", str(RUNNER), str(request_file)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert lines and lines[-1].startswith(RESULT_MARKER), f"{function} did not finish:\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(RESULT_MARKER))
    assert result["outside_modules"] == [], "imported from outside the function, the layer and boto3"
    printed = [json.loads(line) for line in lines[:-1] if line.startswith("{")]
    return result, printed


def metric_values(printed: list[dict[str, Any]], name: str) -> list[float]:
    """The values of one metric in the Embedded Metric Format documents a handler printed."""
    values: list[float] = []
    for document in printed:
        if "_aws" in document and name in document:
            value = document[name]
            values += value if isinstance(value, list) else [value]
    return values


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return event


# ------------------------------------------------------------------------------------------------ the layer
def test_the_layer_leaves_out_what_the_lambda_runtime_provides(layer_dir: Path) -> None:
    assert (layer_dir / "chartmogul_sync" / "config.py").is_file()
    assert not [p.name for p in layer_dir.iterdir() if p.name.split("-")[0] in ("boto3", "botocore", "s3transfer")]


# ------------------------------------------------------------------------------------------------ samples
def test_transform_sample_maps_one_customer_and_sets_the_broken_one_aside(
    stack: LocalStack, layer_dir: Path, runtime_dir: Path
) -> None:
    result, printed = invoke(stack, "TransformFunction", sample("sqs-transform-batch.json"), layer_dir, runtime_dir)
    assert result["error"] is None
    assert result["response"] == {"batchItemFailures": []}
    (bundle,) = [json.loads(m["Body"]) for m in stack.receive_all("UploadQueue")]
    assert bundle["customer_external_id"] == "cus_jsYUDZ5TLwz8K6"
    (bad,) = [json.loads(m["Body"]) for m in stack.receive_all("BadRecordsQueue")]
    assert (bad["stage"], bad["customer_external_id"]) == ("transform", "cus_BrokenSample01")
    assert metric_values(printed, "BundlesSent") == [1]


def test_upload_sample_imports_the_customer_into_chartmogul(
    stack: LocalStack, chartmogul_api: chartmogul_emulator.RunningEmulator, layer_dir: Path, runtime_dir: Path
) -> None:
    stack.put_secret_value("ChartMogulApiKeySecret", chartmogul_api.api_key)
    event = sample("sqs-upload-batch.json")
    bundle = json.loads(event["Records"][0]["body"])["payload"]
    result, printed = invoke(
        stack, "UploadFunction", event, layer_dir, runtime_dir, CHARTMOGUL_API_URL=chartmogul_api.api_url
    )
    assert result["response"] == {"batchItemFailures": []}
    config = chartmogul_api.client_config()
    (source,) = chartmogul.DataSource.all(config).get().data_sources
    customers = chartmogul.Customer.all(config, data_source_uuid=source.uuid).get().entries
    assert [c.external_id for c in customers] == [bundle["customer"]["external_id"]]
    assert metric_values(printed, "ChartMogulAuthFailures") == [0]


def test_a_refused_chartmogul_key_fails_the_record_and_counts_an_auth_failure(
    stack: LocalStack, chartmogul_api: chartmogul_emulator.RunningEmulator, layer_dir: Path, runtime_dir: Path
) -> None:
    stack.put_secret_value("ChartMogulApiKeySecret", "revoked-key")
    event = sample("sqs-upload-batch.json")
    result, printed = invoke(
        stack, "UploadFunction", event, layer_dir, runtime_dir, CHARTMOGUL_API_URL=chartmogul_api.api_url
    )
    # Not the record's fault: it fails (SQS retries it) instead of becoming a bad record.
    assert result["error"] is not None or result["response"]["batchItemFailures"]
    assert stack.receive_all("BadRecordsQueue") == []
    assert sum(metric_values(printed, "ChartMogulAuthFailures")) >= 1


def test_export_samples_send_snapshots_and_an_incremental_run_beats_the_heartbeat(
    stack: LocalStack, stripe_api: RunningStripeEmulator, layer_dir: Path, runtime_dir: Path
) -> None:
    stack.put_secret_value("StripeApiKeySecret", STRIPE_KEY)
    stripe_env = {"STRIPE_API_BASE": stripe_api.base_url}
    result, printed = invoke(stack, "ExportFunction", sample("schedule.json"), layer_dir, runtime_dir, **stripe_env)
    assert result["error"] is None, result
    assert result["response"]["finished"] is True
    assert metric_values(printed, "IncrementalRunsSucceeded") == [1]
    assert metric_values(printed, "StripeAuthFailures") == [0]

    # The sample's customer is not in the generated account: set aside with Stripe's answer, the run ends well.
    result, _ = invoke(stack, "ExportFunction", sample("customer.json"), layer_dir, runtime_dir, **stripe_env)
    assert result["error"] is None, result
    (bad,) = [json.loads(m["Body"]) for m in stack.receive_all("BadRecordsQueue")]
    assert (bad["stage"], bad["customer_external_id"]) == ("export", sample("customer.json")["customer_id"])


def test_a_refused_stripe_key_fails_the_run_and_counts_an_auth_failure(
    stack: LocalStack, stripe_api: RunningStripeEmulator, layer_dir: Path, runtime_dir: Path
) -> None:
    stack.put_secret_value("StripeApiKeySecret", "rk_live_revoked")
    result, printed = invoke(
        stack, "ExportFunction", sample("schedule.json"), layer_dir, runtime_dir, STRIPE_API_BASE=stripe_api.base_url
    )
    assert result["error"] is not None
    assert sum(metric_values(printed, "StripeAuthFailures")) >= 1
    assert metric_values(printed, "IncrementalRunsSucceeded") == []


def test_stripe_events_sample_exports_its_customer_once_and_sets_the_thin_event_aside(
    built: Template, stripe_api: RunningStripeEmulator, layer_dir: Path, runtime_dir: Path
) -> None:
    # The Stripe events function is deployed only with a partner event source.
    source = {"StripePartnerEventSourceName": "aws.partner/stripe.com/ed_test_smoke"}
    with local_stack(built, backend="server", parameters=source) as stack:
        stack.put_secret_value("StripeApiKeySecret", STRIPE_KEY)
        event = sample("sqs-stripe-events-batch.json")
        result, printed = invoke(
            stack, "StripeEventsFunction", event, layer_dir, runtime_dir, STRIPE_API_BASE=stripe_api.base_url
        )
        assert result["error"] is None, result
        assert result["response"] == {"batchItemFailures": []}  # every record done with: none comes back
        # Three events of one customer (the generated account has it): one snapshot.
        (snapshot,) = [json.loads(m["Body"]) for m in stack.receive_all("RawQueue")]
        assert snapshot["customer_external_id"] == "cus_XOUYmij3C0QRTV"
        (bad,) = [json.loads(m["Body"]) for m in stack.receive_all("BadRecordsQueue")]
        assert (bad["stage"], bad["field"]) == ("export", "detail.object")  # a thin event names no customer
        assert metric_values(printed, "StripeEventsReceived") == [len(event["Records"])]
        assert metric_values(printed, "StripeAuthFailures") == [0]
