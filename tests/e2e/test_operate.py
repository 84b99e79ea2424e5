"""Operating the sync on "your own accounts": `cmsync check`, `plan`, `sync --local`, `audit`, `status`.

The two emulators stand in for a Stripe test-mode account and a ChartMogul account, served on loopback as
separate servers; every command runs through `cmsync` itself with the keys and endpoints in the environment, as a
user runs it, and talks to them through the official clients. The Stripe account lives in real time (the
emulator follows the wall clock), because a local sync's cursors are wall time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chartmogul
import pytest
from click.testing import CliRunner, Result

from chartmogul_sync.cli import main
from localdev import chartmogul_emulator, stripe_emulator
from localdev.fx import DEFAULT_RATES
from localdev.scenarios import Account, generate_account

pytestmark = pytest.mark.slow

RATES = json.dumps(DEFAULT_RATES)
RESTRICTED_WITHOUT_SUBSCRIPTIONS = "rk_test_no_subscriptions_read"


@pytest.fixture
def account() -> Account:
    return generate_account(customers=24, months=12, seed=11, now=int(time.time()))


@pytest.fixture
def stripe(account: Account) -> Iterator[stripe_emulator.RunningStripeEmulator]:
    everything_but_subscriptions = frozenset({"rak_customer_read", "rak_product_read", "rak_plan_read"})
    with stripe_emulator.start(
        account,
        restricted_keys={RESTRICTED_WITHOUT_SUBSCRIPTIONS: everything_but_subscriptions},
        follow_wall_clock=True,
    ) as running:
        yield running


@pytest.fixture
def chartmogul_server() -> Iterator[chartmogul_emulator.RunningEmulator]:
    # ChartMogul refuses AUD here (the emulator's rate table lacks it): customers billed in AUD become records
    # that wait in bad-records, with ChartMogul's reason, as any permanent refusal would.
    without_aud = {code: rate for code, rate in DEFAULT_RATES.items() if code != "AUD"}
    with chartmogul_emulator.start(rate_limit=None, rates=without_aud) as running:
        yield running


def cmsync(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def environment(stripe: Any, chartmogul_server: Any, **extra: str) -> dict[str, str]:
    return {
        "STRIPE_API_BASE": stripe.base_url,
        "STRIPE_API_KEY": "sk_test_operator",
        "CHARTMOGUL_API_URL": chartmogul_server.api_url,
        "CHARTMOGUL_API_KEY": chartmogul_server.api_key,
        **extra,
    }


def chartmogul_writes(server: chartmogul_emulator.RunningEmulator) -> int:
    routes: dict[str, dict[str, int]] = server.request_counts()["routes"]
    return sum(
        count
        for route, statuses in routes.items()
        if not route.startswith("GET ")
        for status, count in statuses.items()
        if status.startswith("2")
    )


def chartmogul_requests_by_route(server: chartmogul_emulator.RunningEmulator) -> dict[str, int]:
    routes: dict[str, dict[str, int]] = server.request_counts()["routes"]
    return {route: sum(statuses.values()) for route, statuses in routes.items()}


def audit_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = cmsync(env, "audit", "--rates", RATES, "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def drift_by_customer(report: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for difference in report["differences"]:
        found.setdefault(difference["customer"], set()).add(difference["cause"])
    return found


def test_check_names_a_wrong_key_and_a_missing_permission(stripe: Any, chartmogul_server: Any) -> None:
    env = environment(stripe, chartmogul_server)
    good = cmsync(env, "check", "--json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["ok"] is True

    wrong = cmsync(
        {**env, "STRIPE_API_KEY": "sk_live_wrong_mode", "CHARTMOGUL_API_KEY": "not-a-key"}, "check", "--json"
    )
    assert wrong.exit_code == 1
    checks = {c["what"]: c for c in json.loads(wrong.stdout)["checks"] if c["status"] == "fail"}
    assert "401" in checks["Stripe key"]["detail"]
    assert "401" in checks["ChartMogul key"]["detail"]
    assert "not-a-key" not in wrong.output  # keys are never printed

    restricted = cmsync({**env, "STRIPE_API_KEY": RESTRICTED_WITHOUT_SUBSCRIPTIONS}, "check")
    assert restricted.exit_code == 1
    assert "Stripe read subscriptions" in restricted.output
    assert "rak_subscription_read" in restricted.output  # the permission to add, as Stripe names it
    assert "Stripe read customers" in restricted.output


def test_plan_sync_audit_status_and_every_injected_drift_named(
    account: Account, stripe: Any, chartmogul_server: Any, tmp_path: Path
) -> None:
    env = environment(stripe, chartmogul_server)
    state = str(tmp_path / "state")
    truth = account.ground_truth()
    usd = sorted(
        customer
        for customer, expected in truth["customers"].items()
        if len(expected["invoices"]) >= 2 and {i["currency"] for i in expected["invoices"]} == {"USD"}
    )
    aud = sorted(
        customer
        for customer, expected in truth["customers"].items()
        if "AUD" in {i["currency"] for i in expected["invoices"]}
    )
    assert len(usd) >= 4 and aud, "the generated account has USD customers with history and AUD customers"

    # plan: read only, and it lists what an upload would create.
    before = chartmogul_writes(chartmogul_server)
    planned = cmsync(env, "plan", usd[0], "--json")
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)["customers"][0]
    assert plan["writes"]["customers_created"] == 1
    assert plan["writes"]["invoices_created"] == len(truth["customers"][usd[0]]["invoices"])
    assert any(change.startswith("create invoice ") for change in plan["changes"])
    assert chartmogul_writes(chartmogul_server) == before == 0

    # sync --local backfill: every customer imported but the AUD ones, which wait in bad-records.
    backfill = cmsync(env, "sync", "--local", "--mode", "backfill", "--state-dir", state)
    assert backfill.exit_code == 1, backfill.output  # a record waits in a dead-letter queue
    assert "bad-records" in backfill.output
    code, report = audit_json(env, "--state-dir", state)
    assert code == 1
    assert set(drift_by_customer(report)) == set(aud)
    assert all(causes == {"waiting in a dead-letter queue"} for causes in drift_by_customer(report).values())
    assert all("bad-records" in d["detail"] for d in report["differences"])

    # The AUD fix (ChartMogul learns the rate); the next run replays nothing by itself, so resync them.
    chartmogul_server.options.rates["AUD"] = DEFAULT_RATES["AUD"]
    for customer in aud:
        assert cmsync(env, "sync", "--local", "--mode", "customer", "--customer", customer, "--state-dir", state)
    (tmp_path / "state" / "dead-letters.json").write_text("[]")  # the records were dealt with: clear them
    code, report = audit_json(env, "--state-dir", state)
    assert (code, report["differences"]) == (0, []), report["differences"]
    assert report["summary"]["matches"] is True
    assert report["months"][-1]["chartmogul_mrr"] == report["months"][-1]["stripe_mrr"] > 0

    # Drift: an invoice deleted in ChartMogul, a customer merged there, and a change in Stripe not synced yet.
    deleted_from, merged, merged_into, upgraded = usd[0], usd[1], usd[2], usd[3]
    config = chartmogul_server.client_config()
    sources = chartmogul.DataSource.all(config).get().data_sources
    data_source = sources[0].uuid

    def customer_uuid(external_id: str) -> str:
        found = chartmogul.Customer.all(config, data_source_uuid=data_source, external_id=external_id).get()
        return str(found.entries[0].uuid)

    invoices = chartmogul.Invoice.all(config, uuid=customer_uuid(deleted_from)).get().invoices
    chartmogul.Invoice.destroy(config, uuid=invoices[0].uuid).get()
    chartmogul.Customer.merge(
        config,
        data={"from": {"customer_uuid": customer_uuid(merged)}, "into": {"customer_uuid": customer_uuid(merged_into)}},
    ).get()
    step = stripe.apply_step({"kind": "upgrade", "customer": upgraded})
    assert "events" in step

    code, report = audit_json(env, "--state-dir", state)
    assert code == 1
    causes = drift_by_customer(report)
    assert causes[deleted_from] == {"manual edit in ChartMogul"}
    assert causes[merged] == {"customer merged in ChartMogul"}
    assert causes[merged_into] == {"customer merged in ChartMogul"}
    assert causes[upgraded] == {"not yet synced"}
    assert set(causes) == {deleted_from, merged, merged_into, upgraded}
    missing = [d for d in report["differences"] if d["customer"] == deleted_from]
    assert (
        missing[0]["problem"] == "invoice missing in ChartMogul" and missing[0]["object_id"] == invoices[0].external_id
    )

    # Incremental from the saved state: only the changed customer is exported, and it is then in sync.
    incremental = cmsync(env, "sync", "--local", "--mode", "incremental", "--state-dir", state, "--json")
    assert incremental.exit_code == 0, incremental.output
    assert json.loads(incremental.stdout)["functions"]["TransformFunction"]["records"] == 1
    code, report = audit_json(env, "--state-dir", state)
    assert upgraded not in drift_by_customer(report)
    # Resumed from the state directory: a run with nothing new changes nothing in ChartMogul.
    writes = chartmogul_writes(chartmogul_server)
    again = cmsync(env, "sync", "--local", "--mode", "incremental", "--state-dir", state, "--json")
    assert again.exit_code == 0 and chartmogul_writes(chartmogul_server) == writes

    status = cmsync(env, "status", "--state-dir", state, "--json")
    assert status.exit_code == 0, status.output
    summary = json.loads(status.stdout)
    assert summary["incremental_cursor"] is not None and summary["backfills"][0]["finished"] is True
    # Each mode's last run, as the export function recorded it at its end.
    assert {mode: run["outcome"] for mode, run in summary["last_runs"].items()} == {
        "incremental": "ok",
        "backfill": "ok",
        "customer": "ok",
    }
    assert summary["last_runs"]["backfill"]["customers_exported"] == len(account.scenarios)


def test_a_transform_bug_shows_as_a_mapping_difference(
    account: Account, stripe: Any, chartmogul_server: Any, tmp_path: Path
) -> None:
    """A wrong mapping config stands in for a transform bug: ChartMogul holds exactly what the mapping says, so
    only the audit's independent derivation from Stripe can tell, and it names the mapping as the cause."""
    truth = account.ground_truth()
    customer = next(
        c
        for c, expected in sorted(truth["customers"].items())
        if expected["plans"] and expected["mrr"][truth["months"][-1]]
    )
    wrong = tmp_path / "wrong-mapping.yaml"
    wrong.write_text(f"version: 1\nexclude:\n  prices: [{truth['customers'][customer]['plans'][0]['external_id']}]\n")
    env = environment(stripe, chartmogul_server)
    state = str(tmp_path / "state")
    synced = cmsync(
        env,
        "sync",
        "--local",
        "--mode",
        "customer",
        "--customer",
        customer,
        "--state-dir",
        state,
        "--config",
        str(wrong),
    )
    assert synced.exit_code == 0, synced.output
    code, report = audit_json(env, "--customer", customer, "--config", str(wrong), "--state-dir", state)
    assert code == 1
    assert {d["check"] for d in report["differences"]} == {"numbers"}  # integrity is clean
    assert {d["cause"] for d in report["differences"]} == {"mapping"}
    assert {d["customer"] for d in report["differences"]} == {customer}


def test_a_transform_that_counts_tax_refunds_or_churn_otherwise_is_named_by_that_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three transform bugs at once, each in its own customer: the tax sent as zero (so ChartMogul's MRR keeps it),
    refunds left out, cancellations a month late. ChartMogul holds exactly what the (buggy) mapping says, so
    integrity is clean; the audit's independent derivation names the part of Stripe's data each bug miscounts."""
    from chartmogul_sync.audit.mrr_rules import add_months
    from chartmogul_sync.transform import mapping

    # Large enough to hold the three scenarios.
    account = generate_account(customers=40, months=12, seed=11, now=int(time.time()))
    truth = account.ground_truth()

    def one_with(scenario: str) -> str:
        return next(c for c, expected in sorted(truth["customers"].items()) if scenario in expected["scenarios"])

    taxed, refunded, churned = one_with("tax_exclusive"), one_with("refund_partial"), one_with("cancel_now")
    line, cancelled_at = mapping._BundleMapper.line, mapping._BundleMapper.cancelled_at

    def line_without_tax(self: Any, invoice: Any, stripe_line: Any) -> Any:
        draft = line(self, invoice, stripe_line)
        if draft is not None:
            draft["tax_amount_in_cents"] = 0
        return draft

    def cancelled_a_month_late(self: Any, subscription_id: str, subscription: Any) -> Any:
        moment = cancelled_at(self, subscription_id, subscription)
        return None if moment is None else add_months(moment, 1)

    monkeypatch.setattr(mapping._BundleMapper, "line", line_without_tax)
    monkeypatch.setattr(mapping._BundleMapper, "cancelled_at", cancelled_a_month_late)
    monkeypatch.setattr(mapping._BundleMapper, "refund_transactions", lambda self: {})

    state = str(tmp_path / "state")
    with (
        stripe_emulator.start(account, follow_wall_clock=True) as stripe,
        chartmogul_emulator.start(rate_limit=None) as chartmogul_server,
    ):
        env = environment(stripe, chartmogul_server)
        for customer in (taxed, refunded, churned):
            synced = cmsync(env, "sync", "--local", "--mode", "customer", "--customer", customer, "--state-dir", state)
            assert synced.exit_code == 0, synced.output
        audited = [arg for customer in (taxed, refunded, churned) for arg in ("--customer", customer)]
        code, report = audit_json(env, "--state-dir", state, *audited)

    assert code == 1
    assert {d["check"] for d in report["differences"]} == {"numbers"}  # ChartMogul holds what the mapping says
    causes = drift_by_customer(report)
    assert causes == {taxed: {"tax"}, refunded: {"refunds"}, churned: {"churn date"}}
    refund = next(d for d in report["differences"] if d["customer"] == refunded)
    assert refund["problem"].startswith("net cash flow") and "missing from ChartMogul" in refund["detail"]
    assert set(report["summary"]["advice"]) == {"tax", "refunds", "churn date"}


def test_compare_data_source_names_the_customers_and_months_where_two_sources_differ(
    account: Account, stripe: Any, chartmogul_server: Any, tmp_path: Path
) -> None:
    """A second data source in the same ChartMogul account, filled through the Import API by the same pipeline
    under another name (standing in for the native Stripe source during a migration), with one customer fewer,
    one more, and one whose plan it leaves out."""
    truth = account.ground_truth()
    last = truth["months"][-1]
    usd = sorted(
        customer
        for customer, expected in truth["customers"].items()
        if expected["mrr"][last] and {i["currency"] for i in expected["invoices"]} == {"USD"}
    )
    assert len(usd) >= 4
    same, differs, only_ours, only_theirs = usd[:4]
    env = environment(stripe, chartmogul_server)
    native = "Stripe (native)"
    without_a_plan = tmp_path / "without-a-plan.yaml"
    plan = truth["customers"][differs]["plans"][0]["external_id"]
    without_a_plan.write_text(f"version: 1\nexclude:\n  prices: [{plan}]\n")

    def sync(customer: str, source_env: dict[str, str], state: str, *config: str) -> None:
        args = ("sync", "--local", "--mode", "customer", "--customer", customer, "--state-dir", state, *config)
        result = cmsync(source_env, *args)
        assert result.exit_code == 0, result.output

    for customer in (same, differs, only_ours):
        sync(customer, env, str(tmp_path / "ours"))
    theirs = {**env, "CHARTMOGUL_DATA_SOURCE_NAME": native}
    sync(same, theirs, str(tmp_path / "theirs"))
    sync(differs, theirs, str(tmp_path / "theirs"), "--config", str(without_a_plan))
    sync(only_theirs, theirs, str(tmp_path / "theirs"))
    writes = chartmogul_writes(chartmogul_server)
    before = chartmogul_requests_by_route(chartmogul_server)

    compared = cmsync(env, "audit", "--compare-data-source", native, "--json")
    assert compared.exit_code == 1, compared.output
    made = chartmogul_requests_by_route(chartmogul_server)
    read = {route: made[route] - before.get(route, 0) for route in made if made[route] != before.get(route, 0)}
    # MRR is compared from the activities alone: per source, its lookup, one customers page and each customer's
    # activities; no invoices, no subscriptions (3 customers in each source).
    assert read == {
        "GET /v1/data_sources": 2,
        "GET /v1/customers": 2,
        "GET /v1/customers/{uuid}/activities": 6,
    }
    report = json.loads(compared.stdout)
    problems = {(d["customer"], d["problem"]) for d in report["differences"]}
    assert {(only_ours, "only in ours"), (only_theirs, "only in theirs"), (differs, "MRR")} == problems
    at_last = next(d for d in report["differences"] if d["customer"] == differs and d["month"] == last)
    assert at_last["ours"] == truth["customers"][differs]["mrr"][last] and at_last["theirs"] != at_last["ours"]
    assert report["summary"]["customers_in_both"] == 2
    assert chartmogul_writes(chartmogul_server) == writes  # read only

    table = cmsync(env, "audit", "--compare-data-source", native, "--customer", same)
    assert table.exit_code == 0, table.output
    assert "agree on every customer and month" in table.output
    unknown = cmsync(env, "audit", "--compare-data-source", "No such source")
    assert unknown.exit_code == 1 and "no data source named 'No such source'" in unknown.output
