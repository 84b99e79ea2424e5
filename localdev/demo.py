"""`cmsync demo`: the whole pipeline on this machine, then a report a finance engineer can check.

A generated Stripe account (every scenario of docs/sources.md#stripe-scenarios), a backfill through the three functions,
a round of changes in Stripe and an incremental run; then records per stage, dead-letter contents with their
reasons, requests to Stripe and ChartMogul, time per stage, and the audit of ChartMogul's MRR and customer
count month by month against the generator's ground truth. Exits non-zero if any record was lost: a Stripe
customer that is neither in ChartMogul nor in a dead-letter queue with a reason.
"""

from __future__ import annotations

import json
import sys
from contextlib import redirect_stdout
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from localdev.audit import Audit, run_audit
from localdev.pipeline import LocalPipeline, PipelineOptions, StageReport
from localdev.poller import BatchOutcome
from localdev.scenarios import generate_account


class DemoReport(BaseModel):
    account: dict[str, Any]
    stages: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    dead_letters: dict[str, list[dict[str, Any]]]
    requests: dict[str, Any]
    audit: dict[str, Any]
    lost_customers: list[str]

    @property
    def ok(self) -> bool:
        return not self.lost_customers


def run_demo(
    *,
    customers: int = 200,
    months: int = 24,
    seed: int = 7,
    upload_mode: Literal["api", "bulk"] = "api",
    chartmogul_faults: str = "",
    rate_limits: bool = True,
    console: Console | None = None,
    log_path: Path = Path("demo-function-logs.jsonl"),
) -> DemoReport:
    console = console or Console(stderr=True)
    with console.status("generating the Stripe account…"):
        account = generate_account(customers=customers, months=months, seed=seed)
    options = PipelineOptions(
        upload_mode=upload_mode,
        chartmogul_faults=chartmogul_faults,
        stripe_rate_limit="stripe" if rate_limits else None,
        chartmogul_rate_limit=40.0 if rate_limits else None,
    )
    # The functions log structured JSON (and EMF metrics) to stdout as in Lambda; here that goes to a file, so
    # the console shows the progress and the report.
    with (
        log_path.open("w") as function_logs,
        redirect_stdout(function_logs),
        LocalPipeline(account, options) as pipeline,
    ):
        backfill = _with_progress(console, "backfill", customers, lambda tick: pipeline.backfill(on_batch=tick))
        steps = pipeline.apply_demo_changes()
        incremental = _with_progress(console, "incremental", len(steps), lambda tick: pipeline.incremental(tick))
        with console.status("auditing ChartMogul against the ground truth…"):
            truth = account.ground_truth()
            audit = run_audit(pipeline, truth)
            dead_letters = pipeline.dead_letters()
        requests = {
            "stripe": pipeline.stripe.server.request_report(),
            "chartmogul": pipeline.chartmogul.request_counts(),
        }
    described = {queue: [_describe_dead_letter(body) for body in bodies] for queue, bodies in dead_letters.items()}
    mentioned = " ".join(body for bodies in dead_letters.values() for body in bodies)
    lost = [customer for customer in audit.missing_customers if customer not in mentioned]
    return DemoReport(
        account=truth["account"],
        stages=[_stage_dict(stage) for stage in (backfill, incremental)],
        steps=steps,
        dead_letters=described,
        requests=requests,
        audit=_audit_dict(audit),
        lost_customers=lost,
    )


def _with_progress(console: Console, name: str, expected: int, run: Any) -> StageReport:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        # The total is a guess (each customer passes transform and upload); it grows if more records come.
        task = progress.add_task(f"{name}: records through transform + upload", total=max(1, 2 * expected))

        def tick(batch: BatchOutcome) -> None:
            progress.advance(task, len(batch.message_ids))
            done = progress.tasks[0].completed
            if progress.tasks[0].total is not None and done > progress.tasks[0].total:
                progress.update(task, total=done)

        report: StageReport = run(tick)
        progress.update(task, total=progress.tasks[0].completed)
    return report


def _stage_dict(stage: StageReport) -> dict[str, Any]:
    return {
        "name": stage.name,
        "seconds": round(stage.seconds, 3),
        "stripe_requests": stage.stripe_requests,
        "chartmogul_requests": stage.chartmogul_requests,
        "functions": {name: asdict(figures) for name, figures in sorted(stage.functions.items())},
        "export_result": stage.export_result,
    }


def _describe_dead_letter(body: str) -> dict[str, Any]:
    """A bad record's reason fields; any other message (a DLQ'd envelope) by its customer."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return {"reason": "not JSON", "body": body[:200]}
    if not isinstance(parsed, dict):
        return {"reason": "not a JSON object", "body": body[:200]}
    keys = ("stage", "reason", "object_id", "field", "customer_external_id", "error_body")
    if "reason" in parsed:
        return {key: parsed.get(key) for key in keys if parsed.get(key) is not None}
    return {
        "reason": "retries exhausted (see the function's logs)",
        "customer_external_id": parsed.get("customer_external_id"),
    }


def _audit_dict(audit: Audit) -> dict[str, Any]:
    return {
        "matches": audit.matches,
        "customers_expected": audit.customers_expected,
        "customers_in_chartmogul": audit.customers_in_chartmogul,
        "missing_customers": audit.missing_customers,
        "months": [asdict(month) for month in audit.months],
        "customer_differences": [asdict(d) for d in audit.customer_differences],
        "object_differences": [asdict(d) for d in audit.object_differences],
    }


def print_report(report: DemoReport, console: Console) -> None:
    stages = Table(title="Records per stage and time")
    # records: distinct messages; received: with redeliveries; failed: reported as batch item failures.
    for column in ("run", "function", "calls", "records", "received", "failed", "seconds"):
        stages.add_column(column, justify="right" if column not in {"run", "function"} else "left")
    for stage in report.stages:
        for name, figures in stage["functions"].items():
            stages.add_row(
                stage["name"],
                name.removesuffix("Function"),
                str(figures["invocations"]),
                str(figures["records"]),
                str(figures["deliveries"]),
                str(figures["failed"]),
                f"{figures['seconds']:.2f}",
            )
        stages.add_row(stage["name"], "[b]whole run[/b]", "", "", "", "", f"{stage['seconds']:.2f}", end_section=True)
    console.print(stages)

    requests = Table(title="Requests")
    for column in ("run", "Stripe", "ChartMogul"):
        requests.add_column(column, justify="right" if column != "run" else "left")
    for stage in report.stages:
        requests.add_row(stage["name"], str(stage["stripe_requests"]), str(stage["chartmogul_requests"]))
    console.print(requests)

    letters = Table(title="Dead-letter queues")
    for column in ("queue", "stage", "object", "field", "reason"):
        letters.add_column(column)
    for queue, records in report.dead_letters.items():
        for record in records:
            letters.add_row(
                queue,
                str(record.get("stage", "")),
                str(record.get("object_id") or record.get("customer_external_id") or ""),
                str(record.get("field") or ""),
                str(record.get("reason", "")),
            )
    if letters.row_count:
        console.print(letters)
    else:
        console.print("[green]Dead-letter queues: empty[/green]")

    audit = report.audit
    months = Table(title="Audit: ChartMogul against the ground truth (USD)")
    for column in ("month", "MRR ChartMogul", "MRR truth", "difference", "customers CM", "customers truth"):
        months.add_column(column, justify="right")
    for month in audit["months"]:
        difference = month["chartmogul_mrr"] - month["truth_mrr"]
        # Per-customer differences within the rounding tolerance add up to a cent or two here: not an error.
        style = "" if audit["matches"] else "red"
        months.add_row(
            month["month"],
            _dollars(month["chartmogul_mrr"]),
            _dollars(month["truth_mrr"]),
            _dollars(difference),
            str(month["chartmogul_customers"]),
            str(month["truth_customers"]),
            style=style,
        )
    console.print(months)
    differences = audit["customer_differences"]
    if differences:
        table = Table(title=f"MRR differences by customer ({len(differences)})")
        for column in ("customer", "month", "ChartMogul", "truth", "scenarios"):
            table.add_column(column)
        for d in differences:
            table.add_row(
                d["customer"],
                d["month"],
                _dollars(d["chartmogul_mrr"]),
                _dollars(d["truth_mrr"]),
                ", ".join(d["scenarios"]),
            )
        console.print(table)
    objects = audit["object_differences"]
    if objects:
        table = Table(title=f"Object differences ({len(objects)})")
        for column in ("customer", "object", "problem"):
            table.add_column(column)
        for o in objects:
            table.add_row(o["customer"], o["object_id"], o["problem"])
        console.print(table)
    verdict = "[green]matches the ground truth[/green]" if audit["matches"] else "[red]differs (listed above)[/red]"
    console.print(
        f"Customers expected {audit['customers_expected']}, in ChartMogul {audit['customers_in_chartmogul']}; "
        f"audit {verdict}."
    )
    if report.lost_customers:
        console.print(
            f"[red bold]LOST: {len(report.lost_customers)} customers in neither ChartMogul nor a DLQ: "
            f"{', '.join(report.lost_customers)}[/red bold]"
        )
    else:
        console.print("[green]No record lost: every customer is in ChartMogul or in a dead-letter queue.[/green]")


def _dollars(cents: int) -> str:
    return f"{cents / 100:,.2f}"


@click.command("demo")
@click.option("--customers", default=200, show_default=True, help="Customers in the generated Stripe account.")
@click.option("--months", default=24, show_default=True, help="Months of billing history.")
@click.option("--seed", default=7, show_default=True, help="Generator seed (same seed, same account).")
@click.option("--upload-mode", type=click.Choice(["api", "bulk"]), default="api", show_default=True)
@click.option("--chartmogul-faults", default="", help="Fault spec for the ChartMogul emulator, e.g. 429:0.1,500:0.05")
@click.option("--no-rate-limits", is_flag=True, help="Switch off the emulators' Stripe/ChartMogul rate limits.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write JSON here.")
@click.option(
    "--logs",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("demo-function-logs.jsonl"),
    show_default=True,
    help="Where the functions' logs go.",
)
def demo(
    customers: int,
    months: int,
    seed: int,
    upload_mode: Literal["api", "bulk"],
    chartmogul_faults: str,
    no_rate_limits: bool,
    report_path: Path | None,
    log_path: Path,
) -> None:
    """Run the whole pipeline locally (moto + both emulators) and audit the result."""
    console = Console(file=sys.stdout)
    report = run_demo(
        customers=customers,
        months=months,
        seed=seed,
        upload_mode=upload_mode,
        chartmogul_faults=chartmogul_faults,
        rate_limits=not no_rate_limits,
        console=console,
        log_path=log_path,
    )
    console.print(f"Function logs (structured JSON, as CloudWatch would hold them): {log_path}")
    print_report(report, console)
    if report_path is not None:
        report_path.write_text(report.model_dump_json(indent=2))
        console.print(f"Report written to {report_path}")
    sys.exit(0 if report.ok else 1)
