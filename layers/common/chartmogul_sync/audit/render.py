"""The audit report as tables (`cmsync audit`, `cmsync demo`); rich is a command-line dependency only."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .data_sources import SourceComparison
from .report import AuditReport

MAX_ROWS = 200  # the table shows this many differences; --json has them all


def _money(cents: int | None) -> str:
    return "" if cents is None else f"{cents / 100:,.2f}"


def print_audit(report: AuditReport, console: Console, *, title: str = "Audit: ChartMogul against Stripe") -> None:
    truth = any(month.truth_mrr is not None for month in report.months)
    months = Table(title=f"{title}, per month")
    # "difference": over the customers compared (a currency without an exchange rate is left out of it).
    columns = ["month", "MRR ChartMogul", "MRR Stripe", "difference", "customers CM", "customers Stripe"]
    if truth:
        columns += ["MRR truth", "customers truth"]
    for column in columns:
        months.add_column(column, justify="right")
    for month in report.months:
        row = [
            month.month,
            _money(month.chartmogul_mrr),
            _money(month.stripe_mrr),
            _money(month.mrr_difference),
            str(month.chartmogul_customers),
            str(month.stripe_customers),
        ]
        if truth:
            row += [_money(month.truth_mrr), "" if month.truth_customers is None else str(month.truth_customers)]
        months.add_row(*row)
    if report.months:
        console.print(months)
    if report.differences:
        table = Table(title=f"Differences ({len(report.differences)}), each with its cause")
        for column in ("customer", "check", "month", "object", "what", "Stripe", "ChartMogul", "cause"):
            table.add_column(column)
        for d in report.differences[:MAX_ROWS]:
            money = d.problem == "MRR" or d.problem.startswith("net cash flow")
            expected = _money(d.expected) if money and isinstance(d.expected, int) else str(d.expected or "")
            actual = _money(d.actual) if money and isinstance(d.actual, int) else str(d.actual or "")
            table.add_row(
                d.customer,
                d.check,
                d.month or "",
                d.object_id or "",
                d.problem,
                expected,
                actual,
                d.cause.value,
                style="" if d.is_drift else "dim",
            )
        console.print(table)
        if len(report.differences) > MAX_ROWS:
            console.print(f"… and {len(report.differences) - MAX_ROWS} more (--json lists them all)")
    for cause, advice in report.advice().items():
        console.print(f"  [bold]{cause}[/bold]: {advice}")
    causes = ", ".join(f"{cause}: {count}" for cause, count in report.causes().items()) or "none"
    console.print(
        f"Customers audited {report.customers_audited}, in ChartMogul {report.customers_in_chartmogul}; "
        f"differences by cause: {causes}."
    )
    if report.queues_read or report.queues_not_read:
        console.print(f"Dead-letter queues read: {', '.join(report.queues_read) or 'none'}.")
    for queue, why in report.queues_not_read.items():
        console.print(f"  [yellow]not read[/yellow] {queue}: {why}")
    if report.matches:
        console.print("[green]Audit: ChartMogul matches Stripe (no difference but by-design ones).[/green]")
    else:
        console.print(
            f"[red]Audit: ChartMogul differs from Stripe for {len(report.customers_differing)} customers "
            f"(MRR difference {_money(report.mrr_difference)} at the last month).[/red]"
        )


def print_source_comparison(comparison: SourceComparison, console: Console) -> None:
    """`cmsync audit --compare-data-source`: the two data sources' MRR per month, then every difference."""
    months = Table(title=f"{comparison.ours} against {comparison.theirs}, per month")
    for column in ("month", "MRR ours", "MRR theirs", "difference", "customers ours", "customers theirs"):
        months.add_column(column, justify="right")
    for month in comparison.months:
        months.add_row(
            month.month,
            _money(month.ours_mrr),
            _money(month.theirs_mrr),
            _money(month.ours_mrr - month.theirs_mrr),
            str(month.ours_customers),
            str(month.theirs_customers),
        )
    if comparison.months:
        console.print(months)
    if comparison.differences:
        table = Table(title=f"Differences ({len(comparison.differences)})")
        for column in ("customer", "what", "month", f"MRR {comparison.ours}", f"MRR {comparison.theirs}"):
            table.add_column(column)
        for d in comparison.differences[:MAX_ROWS]:
            table.add_row(d.customer, d.problem, d.month or "", _money(d.ours), _money(d.theirs))
        console.print(table)
        if len(comparison.differences) > MAX_ROWS:
            console.print(f"… and {len(comparison.differences) - MAX_ROWS} more (--json lists them all)")
    console.print(
        f"Customers: {comparison.customers_ours} in {comparison.ours}, {comparison.customers_theirs} in "
        f"{comparison.theirs}, {comparison.customers_in_both} in both (matched by external id)."
    )
    if comparison.matches:
        console.print("[green]The two data sources agree on every customer and month.[/green]")
    else:
        console.print(f"[red]The data sources differ for {len(comparison.customers_differing)} customers.[/red]")
