"""`cmsync demo` (and `make demo`) exits non-zero when the audit differs from the ground truth, saying how."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from click.testing import CliRunner

from chartmogul_sync.audit.report import AuditReport, Cause, Difference
from localdev import demo as demo_module


def report(*, matches: bool, lost: list[str] | None = None) -> demo_module.DemoReport:
    differences = (
        []
        if matches
        else [
            Difference(
                check="ground truth",
                customer="cus_1",
                problem="MRR",
                cause=Cause.MAPPING,
                month="2026-01",
                expected=1000,
                actual=900,
            )
        ]
    )
    audit = AuditReport(generated_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC), data_source="ds", differences=differences)
    return demo_module.DemoReport(
        account={},
        stages=[],
        steps=[],
        dead_letters={},
        requests={},
        audit={**audit.summary(), **audit.model_dump(mode="json")},
        lost_customers=lost or [],
    )


@pytest.mark.parametrize(
    ("matches", "lost", "exit_code", "said"),
    [
        (True, [], 0, None),
        (False, [], 1, "demo failed: the audit differs: 1 difference(s) for 1 customer(s)"),
        (True, ["cus_9"], 1, "demo failed: 1 customer(s) lost"),
    ],
)
def test_the_demo_exits_by_its_audit_and_says_what_differs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, matches: bool, lost: list[str], exit_code: int, said: str | None
) -> None:
    # The run itself (minutes) is replaced by its result: what is tested is the verdict on it.
    monkeypatch.setattr(demo_module, "run_demo", lambda **_: report(matches=matches, lost=lost))

    result = CliRunner().invoke(demo_module.demo, ["--logs", str(tmp_path / "logs.jsonl")], terminal_width=200)

    assert result.exit_code == exit_code, result.output
    if said is not None:
        assert said in " ".join(result.output.split())
    if not matches:
        assert "cus_1" in result.output  # the differing customer is printed, not only counted
