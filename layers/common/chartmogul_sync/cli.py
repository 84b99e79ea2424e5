"""The cmsync command line."""

import importlib.util

import click

from .ops.cli import register as register_operations
from .sinks.chartmogul.cli import dlq_group
from .transform.cli import config_group, transform_command


@click.group()
def main() -> None:
    """chartmogul-sync: export from Stripe, transform, upload to ChartMogul."""


main.add_command(transform_command)
main.add_command(config_group)
main.add_command(dlq_group)
register_operations(main)


@main.group()
def emulate() -> None:
    """Run an API emulator on loopback (local development; `localdev` package)."""


def _register_local_development() -> None:
    # The Lambda layer ships without `localdev`; where it is installed (a checkout), its commands join in. An
    # error inside localdev is not hidden: only its absence is.
    if importlib.util.find_spec("localdev") is None:
        return
    from localdev.chartmogul_emulator.cli import chartmogul as chartmogul_emulator
    from localdev.demo import demo
    from localdev.stripe_emulator.cli import stripe as stripe_emulator

    emulate.add_command(chartmogul_emulator)
    emulate.add_command(stripe_emulator)
    main.add_command(demo)


_register_local_development()
