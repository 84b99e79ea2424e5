"""`cmsync emulate stripe`: generate an account and serve it with the Stripe emulator in the foreground."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import click

from localdev.emulator_kit.cli import exit_after_option, faults_option, host_option, listening, port_option
from localdev.scenarios import generate_account
from localdev.stripe_emulator.render import API_VERSION
from localdev.stripe_emulator.server import STRIPE_ENDPOINT_RATE_LIMIT, STRIPE_RATE_LIMITS, RunningStripeEmulator


def _in_existing_directory(context: click.Context, parameter: click.Parameter, path: str | None) -> str | None:
    # Checked before the account is generated, not when the file is written.
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise click.BadParameter(f"the directory of {path!r} does not exist", context, parameter)
    return path


@click.command("stripe")
@host_option
@port_option(12111, "Port (stripe-mock's)")
@click.option(
    "--customers",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Customers in the generated account.",
)
@click.option(
    "--months", default=24, show_default=True, type=click.IntRange(min=1), help="Months of simulated history."
)
@click.option("--seed", default=7, show_default=True, type=int, help="Seed: the same seed gives the same account.")
@click.option("--mode", type=click.Choice(["test", "live"]), default="test", show_default=True, help="Key mode.")
@click.option(
    "--rate-limit",
    default=None,
    type=float,
    help="Requests/s; default Stripe's (25 test, 100 live); 0 switches it off.",
)
@click.option(
    "--endpoint-rate-limit",
    default=STRIPE_ENDPOINT_RATE_LIMIT,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Requests/s of each endpoint (method + path template), besides --rate-limit; Stripe's default; 0: off.",
)
@faults_option("429:0.05,500:0.05,timeout:0.01,reset:0.01")
@click.option("--fault-seed", default=0, show_default=True, type=int, help="Seed of the fault sequence.")
@click.option(
    "--ground-truth",
    "truth_path",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    callback=lambda context, parameter, path: _in_existing_directory(context, parameter, path),
    help="Write it here.",
)
@click.option(
    "--event-list-lag",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seconds: each event joins the events list up to this long after its `created` (eventual consistency).",
)
@click.option("--log-requests", is_flag=True, help="Log every request.")
@click.option(
    "--restricted-key",
    "restricted_keys",
    multiple=True,
    metavar="KEY=PERMISSION,...",
    help="Accept a restricted key holding only these permissions, e.g. rk_test_x=rak_customer_read (repeatable).",
)
@click.option(
    "--wall-clock",
    is_flag=True,
    help="Generate the history up to now and keep the clock on real time (for syncs from another process).",
)
@exit_after_option
def stripe(
    host: str,
    port: int,
    customers: int,
    months: int,
    seed: int,
    mode: str,
    rate_limit: float | None,
    endpoint_rate_limit: float,
    faults: str,
    fault_seed: int,
    truth_path: str | None,
    event_list_lag: int,
    log_requests: bool,
    restricted_keys: tuple[str, ...],
    wall_clock: bool,
    exit_after: float | None,
) -> None:
    """Run the Stripe API emulator on a generated account (Ctrl-C stops it)."""
    now = {"now": int(time.time())} if wall_clock else {}
    account = generate_account(customers=customers, months=months, seed=seed, **now)
    if truth_path:
        Path(truth_path).write_text(json.dumps(account.ground_truth(), indent=1, sort_keys=True))
    limit = STRIPE_RATE_LIMITS[mode] if rate_limit is None else (rate_limit or None)
    emulator = RunningStripeEmulator(
        account,
        mode="live" if mode == "live" else "test",
        rate_limit=limit,
        endpoint_rate_limit=endpoint_rate_limit,
        faults=faults,
        seed=fault_seed,
        host=host,
        port=port,
        event_list_lag_s=event_list_lag,
        restricted_keys=_restricted_keys(restricted_keys),
        follow_wall_clock=wall_clock,
    )
    emulator.server.settings.log_requests = log_requests
    with listening(host, port):
        emulator.start()
    counts = account.store.counts()
    click.echo(
        f"Stripe emulator ({mode} mode, API {API_VERSION}) on {emulator.base_url}: "
        f"{counts['customers']} customers, {counts['invoices']} invoices, {counts['events']} events; "
        f"rate limit {limit or 'off'}/s, {endpoint_rate_limit or 'off'}/s per endpoint. "
        "Admin: /_admin/state, /_admin/clock, /_admin/scenario-steps."
    )
    try:
        threading.Event().wait(exit_after)  # the server runs in its own thread until Ctrl-C (or --exit-after)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def _restricted_keys(specs: tuple[str, ...]) -> dict[str, frozenset[str]]:
    keys: dict[str, frozenset[str]] = {}
    for spec in specs:
        key, separator, permissions = spec.partition("=")
        if not separator or not key.startswith("rk_"):
            raise click.BadParameter(f"{spec!r}: give rk_…=permission,permission", param_hint="--restricted-key")
        keys[key] = frozenset(p.strip() for p in permissions.split(",") if p.strip())
    return keys
