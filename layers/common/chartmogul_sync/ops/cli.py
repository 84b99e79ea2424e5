"""`cmsync check | snapshot | plan | sync --local | audit | status`: operate the sync on your own accounts.

Keys come from `STRIPE_API_KEY` / `CHARTMOGUL_API_KEY` (or the deployed stack's secrets with `--stack NAME`),
endpoints from `STRIPE_API_BASE` / `CHARTMOGUL_API_URL`; keys are never printed. Every command prints a table, or
JSON with `--json`, shows progress on long work (on stderr), and exits 0 only when all is well: 1 when it found
a problem (a refused key, a missing permission, a difference in the audit, a record in a dead-letter queue), 2 for
a usage error. Only `sync --local` needs the `localdev` package (the local runtime); the others do not import it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..state import StateTable
from .accounts import Accounts, AccountsError, load_accounts
from .stack import (
    TERMINAL_QUEUES,
    DeadLetter,
    DeployedStack,
    SavedState,
    StackError,
    load_dead_letters,
    load_state_items,
    parked_from_saved,
)

_OK = {"ok": "[green]ok[/green]", "fail": "[red]FAIL[/red]", "info": "[blue]info[/blue]"}


def _stdout() -> Console:
    return Console(file=sys.stdout, width=160)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )


@contextmanager
def _step_progress() -> Iterator[Callable[[str, int | None], None]]:
    """A progress display fed by (step, total): a new step starts a task, None advances the current one."""
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def tick(step: str, total: int | None) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
                if total is not None:
                    return
            progress.advance(tasks[step])

        yield tick


def _accounts(stack: str | None, *, stripe: bool = True) -> tuple[Accounts, DeployedStack | None]:
    try:
        deployed = DeployedStack.find(stack) if stack else None
        return load_accounts(deployed, stripe=stripe), deployed
    except (AccountsError, StackError) as error:
        raise click.ClickException(str(error)) from None


def _emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
stack_option = click.option("--stack", default=None, metavar="NAME", help="Read keys (and state) from this stack.")


# ---------------------------------------------------------------------------------------------- check


@click.command("check")
@stack_option
@json_option
def check_command(stack: str | None, as_json: bool) -> None:
    """Check the keys: Stripe key mode and read access to every list the exporter uses, the ChartMogul key and
    the data source; with --stack, the deployed stack too (secrets set, schedule, queue depths)."""
    from .inspect import CheckResult, check_chartmogul, check_stripe

    results: list[CheckResult] = []
    accounts: Accounts | None = None
    deployed: DeployedStack | None = None
    if stack is None:
        accounts, _ = _accounts(None)
    else:
        try:
            deployed = DeployedStack.find(stack)
        except StackError as error:
            raise click.ClickException(str(error)) from None
        try:
            accounts = load_accounts(deployed)
            results.append(CheckResult("stack secrets", "ok", "the Stripe and ChartMogul keys are set"))
        except (AccountsError, StackError) as error:  # the stack's other checks still run
            results.append(CheckResult("stack secrets", "fail", str(error)))
    with _progress() as progress:
        progress.add_task("checking Stripe and ChartMogul…", total=None)
        if accounts is not None:
            results[:0] = [*check_stripe(accounts), *check_chartmogul(accounts)]
        if deployed is not None:
            results.append(CheckResult("stack schedule", "info", deployed.schedule_state()))
            results.append(CheckResult("stack audit schedule", "info", deployed.audit_schedule_state()))
            for queue, depth in deployed.queue_depths().items():
                waiting = queue in TERMINAL_QUEUES and depth > 0
                results.append(CheckResult(f"stack queue {queue}", "fail" if waiting else "ok", f"{depth} messages"))
    failed = [r for r in results if r.status == "fail"]
    if as_json:
        _emit_json({"ok": not failed, "checks": [r.__dict__ for r in results]})
    else:
        table = Table(title="cmsync check")
        for column in ("check", "result", "detail"):
            table.add_column(column)
        for result in results:
            table.add_row(result.what, _OK[result.status], result.detail)
        _stdout().print(table)
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------------------------- snapshot


@click.command("snapshot")
@click.argument("customer_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write it here (default stdout).")
@stack_option
def snapshot_command(customer_id: str, output: Path | None, stack: str | None) -> None:
    """Fetch one customer's snapshot from Stripe, by the exporter's own code: the input of `cmsync transform`
    (format: docs/snapshot-format.md)."""
    import stripe

    from .inspect import fetch_snapshot

    accounts, _ = _accounts(stack)
    try:
        snapshot = fetch_snapshot(accounts.stripe_api(budget_s=600), customer_id)
    except stripe.StripeError as error:
        raise click.ClickException(
            f"Stripe refused customer {customer_id} (HTTP {error.http_status}): {error.user_message or error}"
        ) from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    text = snapshot.model_dump_json(indent=2)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text)
        click.echo(
            f"snapshot of {customer_id} written to {output}: {len(snapshot.invoices)} invoices, "
            f"{len(snapshot.subscriptions)} subscriptions",
            err=True,
        )


# ---------------------------------------------------------------------------------------------- plan


@click.command("plan")
@click.argument("customer_ids", nargs=-1)
@click.option("--sample", default=10, show_default=True, help="Without ids: this many of the newest customers.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Mapping config YAML.")
@stack_option
@json_option
def plan_command(
    customer_ids: tuple[str, ...], sample: int, config_path: str | None, stack: str | None, as_json: bool
) -> None:
    """What an upload would create, update, cancel or remove in ChartMogul for these customers (or a sample),
    from Stripe now against ChartMogul now. Read only: it makes no write anywhere."""
    from ..audit.chartmogul_side import find_data_source
    from ..sinks.chartmogul.client import TimeBudget
    from ..transform.config import MappingConfigError, load_mapping_config
    from .inspect import fetch_snapshot, plan_customer, sample_customers

    accounts, _ = _accounts(stack)
    try:
        config = load_mapping_config(config_path)
    except MappingConfigError as error:
        raise click.ClickException(str(error)) from None
    stripe_api, chartmogul_api = accounts.stripe_api(), accounts.chartmogul_api()
    ids = list(customer_ids) or sample_customers(stripe_api, sample)
    data_source = find_data_source(chartmogul_api, accounts.settings.chartmogul_data_source_name, TimeBudget())
    now = dt.datetime.now(dt.UTC)
    plans = []
    with _progress() as progress:
        task = progress.add_task("planning customers", total=len(ids))
        for customer_id in ids:
            plans.append(
                plan_customer(fetch_snapshot(stripe_api, customer_id), config, chartmogul_api, data_source, now)
            )
            progress.advance(task)
    if as_json:
        _emit_json(
            {
                "data_source": data_source,
                "customers": [
                    {"customer": p.customer, "writes": p.summary, "changes": p.changes, "note": p.note} for p in plans
                ],
            }
        )
    else:
        console = _stdout()
        if data_source is None:
            console.print("The data source does not exist yet: the first upload creates it, then everything below.")
        table = Table(title="cmsync plan: what an upload would change in ChartMogul")
        for column in ("customer", "writes", "changes"):
            table.add_column(column)
        for p in plans:
            writes = p.writes.write_count if p.writes is not None else 0
            table.add_row(
                p.customer, str(writes), "\n".join(p.changes) or p.note or "nothing: ChartMogul is up to date"
            )
        console.print(table)


# ---------------------------------------------------------------------------------------------- sync --local


@click.command("sync")
@click.option("--local", "local", is_flag=True, help="Run the three functions on this machine (moto for AWS).")
@click.option(
    "--mode", type=click.Choice(["backfill", "incremental", "customer"]), default="incremental", show_default=True
)
@click.option("--customer", default=None, metavar="ID", help="The customer of --mode customer.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cmsync-state"),
    show_default=True,
    help="Where the sync state (cursor, id map, checkpoints) and waiting dead letters are kept between runs.",
)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Mapping config YAML.")
@json_option
def sync_command(
    local: bool, mode: str, customer: str | None, state_dir: Path, config_path: str | None, as_json: bool
) -> None:
    """Run a sync against the configured Stripe and ChartMogul through the real handlers, here."""
    if not local:
        raise click.UsageError("only --local is supported here; a deployed stack syncs on its schedule (see README)")
    try:
        from localdev.local_sync import run_local_sync
    except ImportError:
        raise click.ClickException("sync --local needs the localdev package (a checkout: make install)") from None
    accounts, _ = _accounts(None)
    if mode == "customer" and not customer:
        raise click.UsageError("--mode customer needs --customer ID")
    # The functions log structured JSON to stdout, as in Lambda; here that goes to a file beside the state.
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "function-logs.jsonl"
    with _progress() as progress, log_path.open("a") as logs, redirect_stdout(logs):
        task = progress.add_task(f"{mode}: records through transform + upload", total=None)
        result = run_local_sync(
            accounts,
            mode,  # type: ignore[arg-type]
            state_dir=state_dir,
            customer=customer,
            mapping_config=str(Path(config_path).resolve()) if config_path else None,
            on_batch=lambda batch: progress.advance(task, len(batch.message_ids)),
        )
    letters = result.dead_letters
    if as_json:
        _emit_json(
            {
                "mode": result.mode,
                "seconds": round(result.seconds, 2),
                "export": result.export_result,
                "functions": {name: figures.__dict__ for name, figures in sorted(result.functions.items())},
                "dead_letters": result.dead_letters,
                "state_dir": str(state_dir),
            }
        )
    else:
        console = _stdout()
        table = Table(title=f"cmsync sync --local --mode {mode} ({result.seconds:.1f} s)")
        for column in ("function", "calls", "records", "received", "failed", "seconds"):
            table.add_column(column, justify="left" if column == "function" else "right")
        for name, figures in sorted(result.functions.items()):
            table.add_row(
                name.removesuffix("Function"),
                str(figures.invocations),
                str(figures.records),
                str(figures.deliveries),
                str(figures.failed),
                f"{figures.seconds:.2f}",
            )
        console.print(table)
        _print_dead_letters(console, letters)
        console.print(f"State ({result.state_items} items) kept in {state_dir}/ for the next run and `cmsync audit`.")
        console.print(f"Function logs (structured JSON, as CloudWatch would hold them): {log_path}")
    sys.exit(1 if letters else 0)


def _print_dead_letters(console: Console, letters: list[DeadLetter]) -> None:
    if not letters:
        console.print("[green]Dead-letter queues: empty[/green]")
        return
    table = Table(title=f"Waiting in dead-letter queues ({len(letters)})")
    for column in ("queue", "customer", "reason"):
        table.add_column(column)
    for letter in letters:
        table.add_row(letter["queue"], letter["customer_external_id"] or "", letter["reason"])
    console.print(table)


# ---------------------------------------------------------------------------------------------- audit


@click.command("audit")
@click.option("--from", "from_month", default=None, metavar="YYYY-MM", help="First month (default: first invoice).")
@click.option("--to", "to_month", default=None, metavar="YYYY-MM", help="Last month (default: this month).")
@click.option("--customer", "customers", multiple=True, metavar="ID", help="Audit these customers only (repeatable).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Mapping config YAML.")
@click.option(
    "--rates",
    "rates_json",
    default=None,
    metavar="JSON",
    help='Exchange rates to the account currency, e.g. \'{"USD": 1, "EUR": 1.1}\'; without, other currencies are '
    "not compared (cause: exchange rates).",
)
@click.option("--account-currency", default="USD", show_default=True)
@click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), help="A local sync's state (sync --local)."
)
@click.option(
    "--compare-data-source",
    "other_source",
    default=None,
    metavar="NAME",
    help="Instead: compare our data source with this one of the same ChartMogul account (e.g. the native Stripe "
    "source, in a migration), per customer and month; reads ChartMogul only.",
)
# Not an audit option: `--stage` picks dead letters by pipeline stage in `cmsync dlq list|replay`. Declared (and
# hidden) only so that `audit --stage` says why it has none instead of click's "did you mean --stack?".
@click.option("--stage", "stage", default=None, hidden=True, expose_value=True)
@stack_option
@json_option
def audit_command(
    from_month: str | None,
    to_month: str | None,
    customers: tuple[str, ...],
    config_path: str | None,
    rates_json: str | None,
    account_currency: str,
    state_dir: Path | None,
    other_source: str | None,
    stage: str | None,
    stack: str | None,
    as_json: bool,
) -> None:
    """Compare ChartMogul with Stripe: integrity (every object the mapping of Stripe's current data says, nothing
    else) and numbers (MRR, customers, net cash flow per customer and month, derived from Stripe independently of
    the transform). Each difference has a cause; exits 1 when any is drift (see README, "Audit").

    With --compare-data-source NAME: our data source against another one in the same ChartMogul account, per
    customer (matched by external id, the Stripe customer id): customers only in one, and MRR per month where
    the two differ; exits 1 on any difference."""
    from ..audit.render import print_audit
    from ..audit.service import AuditRequest, run_audit
    from ..transform.config import MappingConfigError, load_mapping_config

    if stage is not None:
        raise click.UsageError(_AUDIT_HAS_NO_STAGE)
    if other_source is not None:
        _compare_data_sources(other_source, list(customers), from_month, to_month, stack, as_json)
        return
    accounts, deployed = _accounts(stack)
    try:
        config = load_mapping_config(config_path)
        rates = {k.upper(): float(v) for k, v in json.loads(rates_json).items()} if rates_json else None
    except (MappingConfigError, ValueError, AttributeError) as error:
        raise click.ClickException(f"{error}") from None
    state: StateTable | None = None
    parked: dict[str, str] | None = None
    sqs: Any = None
    if state_dir is not None:
        if not load_state_items(state_dir):
            raise click.ClickException(f"{state_dir} holds no sync state (run `cmsync sync --local` first)")
        state = SavedState.load(state_dir)
        parked = parked_from_saved(load_dead_letters(state_dir))
    elif deployed is not None:
        state, sqs = deployed.state(), deployed.sqs()
    request = AuditRequest(
        customers=list(customers) or None,
        from_month=from_month,
        to_month=to_month,
        config=config,
        rates=rates,
        account_currency=account_currency,
    )
    with _step_progress() as tick:
        report = run_audit(
            request,
            stripe_api=accounts.stripe_api(),
            chartmogul_api=accounts.chartmogul_api(),
            settings=accounts.settings,
            state=state,
            sqs=sqs,
            parked=parked,
            progress=tick,
        )
    if as_json:
        click.echo(report.to_json())
    else:
        print_audit(report, _stdout())
    sys.exit(0 if report.matches else 1)


# Why the audit takes no stage filter: a difference's cause is named from every queue (a record that waits in
# raw-dlq makes its customer "waiting in a dead-letter queue"); reading only one stage's records would turn the
# others' customers into "not uploaded", a wrong cause.
_AUDIT_HAS_NO_STAGE = (
    "the audit has no --stage: it compares ChartMogul with Stripe per customer and reads every stage's queues to "
    "name each difference's cause, so a stage filter would misname the rest as 'not uploaded'; narrow it with "
    "--customer, or list one stage's records with `cmsync dlq list QUEUE --stage STAGE`"
)


def _compare_data_sources(
    other: str, customers: list[str], from_month: str | None, to_month: str | None, stack: str | None, as_json: bool
) -> None:
    from ..audit.data_sources import DataSourceNotFound, compare_data_sources
    from ..audit.render import print_source_comparison

    accounts, _ = _accounts(stack, stripe=False)
    ours = accounts.settings.chartmogul_data_source_name
    if other == ours:
        raise click.UsageError(f"--compare-data-source {other!r} is our own data source: name the other one")
    with _step_progress() as tick:
        try:
            comparison = compare_data_sources(
                accounts.chartmogul_api(),
                ours,
                other,
                customers=customers or None,
                from_month=from_month,
                to_month=to_month,
                on_customer=lambda: tick("reading ChartMogul customers", None),
            )
        except DataSourceNotFound as error:
            raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(comparison.to_json())
    else:
        print_source_comparison(comparison, _stdout())
    sys.exit(0 if comparison.matches else 1)


# ---------------------------------------------------------------------------------------------- status


@click.command("status")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="A local sync's state.")
@stack_option
@json_option
def status_command(state_dir: Path | None, stack: str | None, as_json: bool) -> None:
    """What a sync is doing: incremental cursor and its age, each mode's last run and its outcome, backfill progress,
    queue and DLQ depths (and the oldest message's age of the work queues), the export's and the audit's schedules."""
    from .status import sync_status

    if (state_dir is None) == (stack is None):
        raise click.UsageError("give --stack NAME (a deployed stack) or --state-dir DIR (a local sync)")
    if stack is not None:
        try:
            deployed = DeployedStack.find(stack)
        except StackError as error:
            raise click.ClickException(str(error)) from None
        status = sync_status(
            deployed.state(),
            queue_depths=deployed.queue_depths(),
            schedule=deployed.schedule_state(),
            audit_schedule=deployed.audit_schedule_state(),
            oldest_message_ages=deployed.oldest_message_ages(),
        )
    else:
        assert state_dir is not None
        letters = load_dead_letters(state_dir)
        depths: dict[str, int] = {}
        for queue, _message in letters:
            depths[queue] = depths.get(queue, 0) + 1
        status = sync_status(SavedState.load(state_dir), queue_depths=depths, schedule="local (no schedule)")
    if as_json:
        _emit_json(status.as_dict())
    else:
        status.print(_stdout())
    sys.exit(0 if status.healthy else 1)


def register(group: click.Group) -> None:
    """Add the commands to `cmsync` (chartmogul_sync/cli.py)."""
    for command in (check_command, snapshot_command, plan_command, sync_command, audit_command, status_command):
        group.add_command(command)
