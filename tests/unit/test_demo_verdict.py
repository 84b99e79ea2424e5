"""`cmsync demo` (and `make demo`) exits non-zero when the audit differs from the ground truth, saying how."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from localdev import demo as demo_module


def report(*, matches: bool, lost: list[str] | None = None) -> demo_module.DemoReport:
    difference = {"customer": "cus_1", "month": "2026-01", "chartmogul_mrr": 900, "truth_mrr": 1000, "scenarios": []}
    return demo_module.DemoReport(
        account={},
        stages=[],
        steps=[],
        dead_letters={},
        requests={},
        audit={
            "matches": matches,
            "customers_expected": 1,
            "customers_in_chartmogul": 1,
            "missing_customers": [],
            "months": [],
            "customer_differences": [] if matches else [difference],
            "object_differences": [],
        },
        lost_customers=lost or [],
    )


@pytest.mark.parametrize(
    ("matches", "lost", "exit_code", "said"),
    [
        (True, [], 0, None),
        (False, [], 1, "demo failed: the audit differs: 1 customer-month MRR difference(s)"),
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
