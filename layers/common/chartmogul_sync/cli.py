"""The cmsync command line."""

import click

from .sinks.chartmogul.cli import dlq_group
from .transform.cli import config_group, transform_command


@click.group()
def main() -> None:
    """chartmogul-sync: export from Stripe, transform, upload to ChartMogul."""


main.add_command(transform_command)
main.add_command(config_group)
main.add_command(dlq_group)


@main.group()
def emulate() -> None:
    """Run an API emulator on loopback (local development; `localdev` package)."""


def _register_emulators() -> None:
    # Imported lazily: the Lambda layer ships without `localdev`, and the command line must still load.
    try:
        from localdev.chartmogul_emulator.cli import chartmogul as chartmogul_emulator
        from localdev.stripe_emulator.cli import stripe as stripe_emulator
    except ImportError:
        return
    emulate.add_command(chartmogul_emulator)
    emulate.add_command(stripe_emulator)


_register_emulators()
