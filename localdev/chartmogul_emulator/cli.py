"""`cmsync emulate chartmogul`: run the ChartMogul Import API emulator in the foreground."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
from pathlib import Path

import click

from localdev.chartmogul_emulator.app import create_server
from localdev.chartmogul_emulator.options import DEFAULT_API_KEY, EmulatorOptions, parse_instant
from localdev.emulator_kit.cli import exit_after_option, faults_option, host_option, listening, port_option


def _rate(value: float) -> float | None:
    return value if value > 0 else None


# Each option is checked as it is parsed: a bad value ends in one line and exit 2 (click's BadParameter).


def _parse_rates(context: click.Context, parameter: click.Parameter, text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    try:
        rates = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not valid JSON ({error}); e.g. '{{\"EUR\": 1.1}}'", context, parameter) from None
    if not isinstance(rates, dict):
        raise click.BadParameter(
            f"expected a JSON object of currency codes to rates, got {type(rates).__name__}", context, parameter
        )
    parsed: dict[str, float] = {}
    for code, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise click.BadParameter(
                f"the rate of {code!r} must be a positive number, got {rate!r}", context, parameter
            )
        parsed[str(code).upper()] = float(rate)
    return parsed


def _parse_now(context: click.Context, parameter: click.Parameter, text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as error:
        raise click.BadParameter(str(error), context, parameter) from None


def _db_in_existing_directory(context: click.Context, parameter: click.Parameter, path: str | None) -> str | None:
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise click.BadParameter(f"the directory of {path!r} does not exist", context, parameter)
    return path


@click.command("chartmogul")
@host_option
@port_option(8787, "Port")
@click.option(
    "--db",
    "db_path",
    default=None,
    callback=_db_in_existing_directory,
    help="SQLite file for the state (default: in memory).",
)
@click.option("--api-key", default=DEFAULT_API_KEY, show_default=True, help="The API key (Basic-auth user).")
@click.option("--rate-limit", default=40.0, show_default=True, type=float, help="Requests/s; 0 switches it off.")
@click.option(
    "--max-connections", default=20, show_default=True, type=int, help="Parallel requests in progress; 0: no cap."
)
@click.option("--retry-after/--no-retry-after", default=False, show_default=True, help="Send Retry-After on 429/503.")
@faults_option("429:0.1,500:0.05,timeout:0.02,reset:0.01")
@click.option("--seed", default=None, type=int, help="Seed for the fault sequence.")
@click.option("--fault-hold-seconds", default=30.0, show_default=True, type=float, help="How long a timeout holds.")
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Milliseconds added to every API request before it is answered.",
)
@click.option("--tls", is_flag=True, help="Serve HTTPS with a self-signed certificate (printed path: trust it).")
@click.option(
    "--invoice-batch-mode",
    type=click.Choice(["atomic", "partial"]),
    default="atomic",
    show_default=True,
    help="A multi-invoice import with an invalid invoice: reject all, or store the valid ones.",
)
@click.option(
    "--rates",
    "rates",
    default=None,
    callback=_parse_rates,
    help="Exchange rates to USD as JSON, e.g. '{\"EUR\": 1.1}'.",
)
@click.option(
    "--now", "now", default=None, callback=_parse_now, help="Fixed 'now' (ISO 8601) for customer MRR and checks."
)
@click.option("--log-requests", is_flag=True, help="Log every request.")
@exit_after_option
def chartmogul(
    host: str,
    port: int,
    db_path: str | None,
    api_key: str,
    rate_limit: float,
    max_connections: int,
    retry_after: bool,
    faults: str,
    seed: int | None,
    fault_hold_seconds: float,
    latency_ms: float,
    tls: bool,
    invoice_batch_mode: str,
    rates: dict[str, float] | None,
    now: dt.datetime | None,
    log_requests: bool,
    exit_after: float | None,
) -> None:
    """Run the ChartMogul Import API emulator (Ctrl-C stops it)."""
    options = EmulatorOptions(
        api_key=api_key,
        db_path=db_path,
        host=host,
        port=port,
        tls=tls,
        rate_limit=_rate(rate_limit),
        max_connections=max_connections or None,
        retry_after=retry_after,
        faults=faults,
        seed=seed,
        fault_hold_seconds=fault_hold_seconds,
        latency_ms=latency_ms,
        invoice_batch_mode="partial" if invoice_batch_mode == "partial" else "atomic",
        log_requests=log_requests,
    )
    if rates:
        options.rates = rates
    if now is not None:
        options.now = now
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server, emulator = create_server(options)
    except sqlite3.Error as error:
        raise click.ClickException(f"cannot open the state database {db_path!r}: {error}") from None
    emulator.start_background()
    click.echo(f"ChartMogul emulator (state: {db_path or 'in memory'})")
    if exit_after is not None:
        timer = threading.Timer(exit_after, server.stop)
        timer.daemon = True
        timer.start()
    try:
        with listening(host, port):
            server.serve_forever(on_ready=lambda url: _announce(url, api_key, server.ca_cert_path))
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop_background()


def _announce(base_url: str, api_key: str, ca_cert: object) -> None:
    click.echo(f"  API:    {base_url}/v1   (Basic auth: user {api_key!r}, empty password)")
    click.echo(
        f"  admin:  {base_url}/_admin/requests | /_admin/state | /_admin/reset | /_admin/faults | "
        "/_admin/rate-limit | /_admin/clock"
    )
    if ca_cert:
        click.echo(f"  TLS:    trust {ca_cert}  (export REQUESTS_CA_BUNDLE={ca_cert})")
