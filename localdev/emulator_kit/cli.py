"""Options both emulators' `cmsync emulate ...` commands share.

The one part of the kit that needs `click`; the package does not import it, so the servers stay stdlib-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from localdev.emulator_kit.faults import FaultSpecError, parse_fault_spec

Command = TypeVar("Command", bound=Callable[..., Any])

host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, help="Listen address (keep it on loopback)."
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
