"""The sample events in events/ are events the export function accepts (the demo and the docs use them)."""

import json
from pathlib import Path

import pytest

from chartmogul_sync.sources.stripe.invocation import parse_export_request

EVENTS = Path(__file__).resolve().parents[3] / "events"
EXPORT_EVENTS = ["schedule.json", "backfill.json", "customer.json"]


@pytest.mark.parametrize("name", EXPORT_EVENTS)
def test_a_sample_export_event_parses(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())

    assert parse_export_request(event).mode == event["mode"]
