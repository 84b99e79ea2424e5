"""The cmsync command line.

The product's commands are imported with it. The local world's (`demo`, `emulate chartmogul|stripe`, from the
`localdev` package of a checkout) are imported only when one of them runs or shows its help, so `cmsync check`,
`audit`, `dlq` and the rest never import moto, the emulators or the generator.
"""

import importlib
import importlib.util
from typing import Any

import click

from .ops.cli import register as register_operations
from .sinks.chartmogul.cli import dlq_group
from .transform.cli import config_group, transform_command

# The Lambda layer ships without `localdev`; where it is installed (a checkout), its commands join in. An error
# inside localdev is not hidden: only its absence is.
_LOCAL_WORLD = importlib.util.find_spec("localdev") is not None


class LazyGroup(click.Group):
    """A group whose commands named in `lazy` (name → "module:attribute") are imported when first asked for.

    >>> @click.group(cls=LazyGroup, lazy={"demo": "localdev.demo:demo"})
    ... def main() -> None: ...
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy={"demo": "localdev.demo:demo"} if _LOCAL_WORLD else {})
def main() -> None:
    """chartmogul-sync: export from Stripe, transform, upload to ChartMogul."""


main.add_command(transform_command)
main.add_command(config_group)
main.add_command(dlq_group)
register_operations(main)

if _LOCAL_WORLD:

    @main.group(
        cls=LazyGroup,
        lazy={
            "chartmogul": "localdev.chartmogul_emulator.cli:chartmogul",
            "stripe": "localdev.stripe_emulator.cli:stripe",
        },
    )
    def emulate() -> None:
        """Run an API emulator on loopback (local development; `localdev` package)."""
