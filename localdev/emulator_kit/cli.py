"""Options both emulators' `cmsync emulate ...` commands share.

The one part of the kit that needs `click`; the package does not import it, so the servers stay stdlib-only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from localdev.emulator_kit.faults import FaultSpecError, parse_fault_spec

Command = TypeVar("Command", bound=Callable[..., Any])


def _loopback_only(context: click.Context, parameter: click.Parameter, host: str) -> str:
    # An emulator accepts any API key and injects faults on request: it is a local tool, never a service on a
    # network. Only loopback addresses (127.0.0.0/8, ::1) and the name localhost are accepted.
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    problem = f"{host!r} is not a loopback address (use 127.0.0.1, ::1 or localhost)"
    raise click.BadParameter(problem, context, parameter)


host_option = click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=_loopback_only,
    help="Listen address: loopback only (127.0.0.0/8, ::1, localhost).",
)


exit_after_option = click.option(
    "--exit-after",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop by itself after this many seconds (scripts and tests: a server that outlives its caller ends).",
)


def faults_option(example: str) -> Callable[[Command], Command]:
    """`--faults SPEC`, refused at parse time when the spec does not parse (before anything is generated)."""
    return click.option("--faults", default="", callback=_check_fault_spec, help=f"Fault spec, e.g. {example}")


def _check_fault_spec(context: click.Context, parameter: click.Parameter, spec: str) -> str:
    try:
        parse_fault_spec(spec)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), context, parameter) from None
    return spec


def port_option(default: int, help_text: str) -> Callable[[Command], Command]:
    return click.option(
        "--port",
        default=default,
        show_default=True,
        type=click.IntRange(0, 65_535),
        help=f"{help_text}; 0 picks a free one.",
    )


@contextmanager
def listening(host: str, port: int) -> Iterator[None]:
    """Turns a failure to listen (the port in use, not permitted) into one line and exit 1, not a traceback."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {reason} (another emulator running? give another --port, 0 picks a "
            "free one)"
        ) from None
