"""`cmsync emulate chartmogul`: run the ChartMogul Import API emulator in the foreground."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading

import click

from localdev.chartmogul_emulator.app import create_server
from localdev.chartmogul_emulator.options import DEFAULT_API_KEY, EmulatorOptions
from localdev.emulator_kit.cli import exit_after_option, faults_option, host_option


def _rate(value: float) -> float | None:
    return value if value > 0 else None


@click.command("chartmogul")
@host_option
@click.option("--port", default=8787, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option("--db", "db_path", default=None, help="SQLite file for the state (default: in memory).")
@click.option("--api-key", default=DEFAULT_API_KEY, show_default=True, help="The API key (Basic-auth user).")
@click.option("--rate-limit", default=40.0, show_default=True, type=float, help="Requests/s; 0 switches it off.")
@click.option(
    "--max-connections", default=20, show_default=True, type=int, help="Parallel requests in progress; 0: no cap."
)
@click.option("--retry-after/--no-retry-after", default=False, show_default=True, help="Send Retry-After on 429/503.")
@faults_option("429:0.1,500:0.05,timeout:0.02,reset:0.01")
@click.option("--seed", default=None, type=int, help="Seed for the fault sequence.")
@click.option("--fault-hold-seconds", default=30.0, show_default=True, type=float, help="How long a timeout holds.")
@click.option("--tls", is_flag=True, help="Serve HTTPS with a self-signed certificate (printed path: trust it).")
@click.option(
    "--invoice-batch-mode",
    type=click.Choice(["atomic", "partial"]),
    default="atomic",
    show_default=True,
    help="A multi-invoice import with an invalid invoice: reject all, or store the valid ones.",
)
@click.option("--rates", "rates_json", default=None, help="Exchange rates to USD as JSON, e.g. '{\"EUR\": 1.1}'.")
@click.option("--now", "now_text", default=None, help="Fixed 'now' (ISO 8601) for customer MRR and checks.")
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
    tls: bool,
    invoice_batch_mode: str,
    rates_json: str | None,
    now_text: str | None,
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
        invoice_batch_mode="partial" if invoice_batch_mode == "partial" else "atomic",
        log_requests=log_requests,
    )
    if rates_json:
        options.rates = {key.upper(): float(value) for key, value in json.loads(rates_json).items()}
    if now_text:
        moment = dt.datetime.fromisoformat(now_text.replace("Z", "+00:00"))
        options.now = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server, emulator = create_server(options)
    emulator.start_background()
    click.echo(f"ChartMogul emulator (state: {db_path or 'in memory'})")
    if exit_after is not None:
        timer = threading.Timer(exit_after, server.stop)
        timer.daemon = True
        timer.start()
    try:
        server.serve_forever(on_ready=lambda url: _announce(url, api_key, server.ca_cert_path))
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop_background()


def _announce(base_url: str, api_key: str, ca_cert: object) -> None:
    click.echo(f"  API:    {base_url}/v1   (Basic auth: user {api_key!r}, empty password)")
    click.echo(
        f"  admin:  {base_url}/_admin/requests | /_admin/state | /_admin/reset | /_admin/faults | /_admin/rate-limit"
    )
    if ca_cert:
        click.echo(f"  TLS:    trust {ca_cert}  (export REQUESTS_CA_BUNDLE={ca_cert})")
