"""The cmsync command line."""

import click


@click.group()
def main() -> None:
    """chartmogul-sync: export from Stripe, transform, upload to ChartMogul."""
