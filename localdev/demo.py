"""`cmsync demo`: the whole pipeline on this machine, then a report a finance engineer can check.

A generated Stripe account (every scenario of docs/sources.md#stripe-scenarios), a backfill through the three functions,
a round of changes in Stripe and an incremental run; then records per stage, dead-letter contents with their
reasons, requests to Stripe and ChartMogul, time per stage, and the audit of ChartMogul's MRR and customer
count month by month against the generator's ground truth. Exits non-zero if any record was lost: a Stripe
customer that is neither in ChartMogul nor in a dead-letter queue with a reason, and when the audit finds ChartMogul
differing from the ground truth (the differences are printed).
"""

from __future__ import annotations

import json
import os
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

from chartmogul_sync.audit.render import print_audit
from chartmogul_sync.audit.report import AuditReport
from localdev.audit import audit_pipeline
from localdev.aws.poller import BatchOutcome
from localdev.emulator_kit.faults import FaultSpecError, parse_fault_spec
from localdev.pipeline import LocalPipeline, PipelineOptions, StageReport
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
        """No record lost and ChartMogul's numbers match the ground truth: what `make demo` exits 0 for."""
        return not self.lost_customers and bool(self.audit.get("matches"))


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
    realtime: bool = False,
) -> DemoReport:
    console = console or Console(stderr=True)
    with console.status("generating the Stripe account…"):
        account = generate_account(customers=customers, months=months, seed=seed)
    options = PipelineOptions(
        upload_mode=upload_mode,
        chartmogul_faults=chartmogul_faults,
        stripe_rate_limit="stripe" if rate_limits else None,
        chartmogul_rate_limit=40.0 if rate_limits else None,
        stripe_event_destination=realtime,
    )
    # The functions log structured JSON (and EMF metrics) to stdout as in Lambda; here that goes to a file, so
    # the console shows the progress and the report.
    with (
        log_path.open("w") as function_logs,
        redirect_stdout(function_logs),
        LocalPipeline(account, options) as pipeline,
    ):
        # A backfill's customers pass twice: each one's head first, then its whole snapshot (docs/architecture.md).
        backfill = _with_progress(console, "backfill", 2 * customers, lambda tick: pipeline.backfill(on_batch=tick))
        steps = pipeline.apply_demo_changes()
        stages = [backfill]
        if realtime:
            # The changes reach ChartMogul through EventBridge; the schedule's run after is the reconciliation.
            stages.append(_with_progress(console, "near-real-time", len(steps), lambda tick: pipeline.realtime(tick)))
        incremental = _with_progress(console, "incremental", len(steps), lambda tick: pipeline.incremental(tick))
        stages.append(incremental)
        with console.status("auditing ChartMogul against Stripe and the ground truth…"):
            truth = account.ground_truth()
            audit = audit_pipeline(pipeline, truth)
            dead_letters = pipeline.dead_letters()
        requests = {
            "stripe": pipeline.stripe.request_report(),
            "chartmogul": pipeline.chartmogul.request_counts(),
        }
    described = {queue: [_describe_dead_letter(body) for body in bodies] for queue, bodies in dead_letters.items()}
    mentioned = " ".join(body for bodies in dead_letters.values() for body in bodies)
    lost = [customer for customer in audit.missing_customers if customer not in mentioned]
    return DemoReport(
        account=truth["account"],
        stages=[_stage_dict(stage) for stage in stages],
        steps=steps,
        dead_letters=described,
        requests=requests,
        audit=_audit_dict(audit),
        lost_customers=lost,
    )


def _with_progress(console: Console, name: str, expected: int, run: Any) -> StageReport:
    """Run a stage under a progress bar of its records; `expected`: the messages it should map and upload."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        # The total is a guess (each message passes transform and upload); it grows if more records come.
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


def _audit_dict(audit: AuditReport) -> dict[str, Any]:
    return {**audit.summary(), **audit.model_dump(mode="json")}


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

    print_audit(
        AuditReport.model_validate(report.audit),
        console,
        title="Audit: ChartMogul against Stripe and the ground truth (USD)",
    )
    if report.lost_customers:
        console.print(
            f"[red bold]LOST: {len(report.lost_customers)} customers in neither ChartMogul nor a DLQ: "
            f"{', '.join(report.lost_customers)}[/red bold]"
        )
    else:
        console.print("[green]No record lost: every customer is in ChartMogul or in a dead-letter queue.[/green]")


def _fault_spec(context: click.Context, parameter: click.Parameter, spec: str) -> str:
    try:
        parse_fault_spec(spec)
    except FaultSpecError as error:
        raise click.BadParameter(str(error), context, parameter) from None
    return spec


def _writable_file(context: click.Context, parameter: click.Parameter, path: Path | None) -> Path | None:
    """An output path is checked before the run, not found wanting after it (the report would be lost)."""
    if path is None:
        return None
    directory = path.resolve().parent
    if not directory.is_dir():
        raise click.BadParameter(f"the directory {str(directory)!r} does not exist", context, parameter)
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.BadParameter(f"{str(path)!r} cannot be written", context, parameter)
    return path


@click.command("demo")
@click.option(
    "--customers",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Customers in the generated Stripe account.",
)
@click.option("--months", default=24, show_default=True, type=click.IntRange(min=1), help="Months of billing history.")
@click.option("--seed", default=7, show_default=True, help="Generator seed (same seed, same account).")
@click.option("--upload-mode", type=click.Choice(["api", "bulk"]), default="api", show_default=True)
@click.option(
    "--chartmogul-faults",
    default="",
    callback=_fault_spec,
    help="Fault spec for the ChartMogul emulator, e.g. 429:0.1,500:0.05",
)
@click.option("--no-rate-limits", is_flag=True, help="Switch off the emulators' Stripe/ChartMogul rate limits.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_writable_file,
    help="Also write JSON here.",
)
@click.option(
    "--logs",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("demo-function-logs.jsonl"),
    show_default=True,
    callback=_writable_file,
    help="Where the functions' logs go.",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="Deliver the changes through EventBridge (Stripe event destination) before the scheduled run.",
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
    realtime: bool,
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
        realtime=realtime,
    )
    console.print(f"Function logs (structured JSON, as CloudWatch would hold them): {log_path}")
    print_report(report, console)
    if report_path is not None:
        report_path.write_text(report.model_dump_json(indent=2))
        console.print(f"Report written to {report_path}")
    if not report.ok:
        problems = []
        if report.lost_customers:
            problems.append(f"{len(report.lost_customers)} customer(s) lost")
        if not report.audit.get("matches"):
            audit = AuditReport.model_validate(report.audit)
            problems.append(
                f"the audit differs: {len(audit.drift)} difference(s) for {len(audit.customers_differing)} "
                f"customer(s), {len(audit.missing_customers)} customer(s) missing (listed above)"
            )
        console.print(f"[red bold]demo failed: {'; '.join(problems)}[/red bold]")
    sys.exit(0 if report.ok else 1)
