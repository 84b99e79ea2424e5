"""The audit's verdict: "matches" only when no difference is left but those ChartMogul's rules make on purpose.

Both sides round each line item's MRR to a cent as ChartMogul documents, so there is no tolerance: a one-cent
difference is listed and is drift.
"""

import datetime as dt

from chartmogul_sync.audit.report import TOLERANCE_CENTS_PER_SUBSCRIPTION, AuditReport, Cause, Difference


def _report(*differences: Difference) -> AuditReport:
    return AuditReport(
        generated_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC), data_source="ds", differences=list(differences)
    )


def _mrr(cause: Cause, expected: int = 100_00, actual: int = 99_99) -> Difference:
    return Difference(
        check="numbers", customer="cus_1", problem="MRR", cause=cause, month="2026-01", expected=expected, actual=actual
    )


def test_there_is_no_rounding_tolerance():
    assert TOLERANCE_CENTS_PER_SUBSCRIPTION == 0


def test_a_one_cent_difference_is_drift_and_not_a_match():
    assert _report().matches
    off_by_a_cent = _report(_mrr(Cause.MAPPING))
    assert not off_by_a_cent.matches
    assert off_by_a_cent.customers_differing == ["cus_1"]


def test_only_a_documented_by_design_cause_still_matches():
    assert _report(_mrr(Cause.FX)).matches  # a currency without a rate: not compared, said so
    assert not _report(_mrr(Cause.FX), _mrr(Cause.NOT_UPLOADED)).matches
