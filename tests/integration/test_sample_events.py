"""The SQS samples in events/ run through the real handlers in the template's stack: what a user invoking them by
hand (`sam remote invoke`, or the local runtime) would see."""

import json
from collections.abc import Iterator

import chartmogul
import pytest

from chartmogul_sync.queues import BadRecord
from chartmogul_sync.transform import MAPPING_VERSION
from localdev import chartmogul_emulator
from localdev.aws.poller import PollerOptions
from localdev.aws.runtime import LocalStack, load_event, local_stack


@pytest.fixture
def stack() -> Iterator[tuple[LocalStack, chartmogul_emulator.RunningEmulator]]:
    with (
        chartmogul_emulator.start(rate_limit=None, max_connections=None) as emulator,
        local_stack(
            options=PollerOptions(wait_for_batching_window=False, failed_record_visibility_timeout=0),
            environment={"CHARTMOGUL_API_URL": emulator.api_url, "UPLOAD_MAX_CONCURRENCY": "1"},
        ) as stack,
    ):
        stack.put_secret_value("ChartMogulApiKeySecret", emulator.api_key)
        yield stack, emulator


def test_transform_sample_maps_one_customer_and_sets_the_broken_one_aside(
    stack: tuple[LocalStack, chartmogul_emulator.RunningEmulator],
) -> None:
    local, _ = stack
    event = load_event("sqs-transform-batch.json")
    assert local.invoke("TransformFunction", event) == {"batchItemFailures": []}
    bundles = [json.loads(m["Body"]) for m in local.receive_all("UploadQueue")]
    assert [b["customer_external_id"] for b in bundles] == ["cus_jsYUDZ5TLwz8K6"]
    assert bundles[0]["payload"]["mapping_version"] == MAPPING_VERSION
    (bad,) = [BadRecord.model_validate_json(m["Body"]) for m in local.receive_all("BadRecordsQueue")]
    assert (bad.stage, bad.customer_external_id, bad.object_id) == (
        "transform",
        "cus_BrokenSample01",
        "in_PctcguR8IyCyzLUdnipEtlXs",
    )
    assert bad.field is not None and "period" in bad.field
    assert bad.original_body == event["Records"][1]["body"]  # replayable as it arrived


def test_upload_sample_imports_the_customer_once_however_often_it_arrives(
    stack: tuple[LocalStack, chartmogul_emulator.RunningEmulator],
) -> None:
    local, emulator = stack
    event = load_event("sqs-upload-batch.json")
    bundle = json.loads(event["Records"][0]["body"])["payload"]
    for _ in range(2):
        assert local.invoke("UploadFunction", event) == {"batchItemFailures": []}
    config = emulator.client_config()
    (source,) = chartmogul.DataSource.all(config).get().data_sources
    customers = chartmogul.Customer.all(config, data_source_uuid=source.uuid).get().entries
    assert [c.external_id for c in customers] == [bundle["customer"]["external_id"]]
    invoices = chartmogul.Invoice.all(config, data_source_uuid=source.uuid, per_page=200).get().invoices
    assert sorted(i.external_id for i in invoices) == sorted(i["external_id"] for i in bundle["invoices"])
