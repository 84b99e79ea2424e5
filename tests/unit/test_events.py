"""events/schedule.json is what the template's schedule delivers (ScheduleV2 sends its Input verbatim, with
context attributes filled in: docs/sources.md#aws-scheduler)."""

from __future__ import annotations

import datetime
import json

from localdev.aws.runtime import load_event
from localdev.aws.template import DEFAULT_TEMPLATE, Template

SCHEDULER_PLACEHOLDER = "<aws.scheduler.scheduled-time>"


def test_schedule_event_is_the_templated_schedule_input() -> None:
    (schedule,) = Template.load(DEFAULT_TEMPLATE).functions["ExportFunction"].schedule_events
    assert schedule.input is not None
    templated = json.loads(schedule.input)
    event = load_event("schedule.json")

    assert set(event) == set(templated)
    for key, value in templated.items():
        if value == SCHEDULER_PLACEHOLDER:
            # Scheduler fills in an ISO 8601 UTC timestamp.
            filled = datetime.datetime.fromisoformat(event[key].replace("Z", "+00:00"))
            assert filled.utcoffset() == datetime.timedelta(0)
        else:
            assert event[key] == value
