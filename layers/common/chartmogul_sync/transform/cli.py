"""`cmsync transform` (a dry run of the mapping on one snapshot) and `cmsync config check`."""

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ..models.envelope import RawMessage
from ..models.snapshot import CustomerSnapshot
from ..queues import load_json
from .config import MappingConfig, MappingConfigError, describe_validation_error, load_mapping_config
from .errors import CustomerExcluded, MappingError
from .mapping import map_snapshot

_existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)


def _config(path: Path | None) -> MappingConfig:
    try:
        return load_mapping_config(path)
    except MappingConfigError as error:
        raise click.ClickException(f"mapping config {error.source}:\n  " + "\n  ".join(error.problems)) from None


def _read_snapshot(path: Path) -> tuple[CustomerSnapshot, Any]:
    """A snapshot file: a bare CustomerSnapshot, or a raw-queue message (whose snapshot time is then used)."""
    try:
        data = load_json(path.read_text(encoding="utf-8"))  # nesting bounded: never a RecursionError
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise click.ClickException(f"{path}: not a JSON file ({error})") from None
    is_message = isinstance(data, dict) and ("payload" in data or "claim_check" in data)
    try:
        if is_message:
            message = RawMessage.model_validate(data)
            if message.payload is None:
                check = message.claim_check
                where = f"s3://{check.bucket}/{check.key}" if check else "its payload"
                raise click.ClickException(f"{path}: the message carries a claim check; download {where}, pass that")
            return message.payload, message.snapshot_time
        return CustomerSnapshot.model_validate(data), None
    except ValidationError as error:
        what = "raw message" if is_message else "customer snapshot"
        raise click.ClickException(
            f"{path}: not a {what}:\n  " + "\n  ".join(describe_validation_error(error))
        ) from None


@click.command("transform")
@click.argument("snapshot_file", type=_existing_file)
@click.option("--config", "config_file", type=_existing_file, help="Mapping config YAML (default: the defaults).")
def transform_command(snapshot_file: Path, config_file: Path | None) -> None:
    """Map one customer snapshot (SNAPSHOT_FILE, JSON) and print the ChartMogul bundle: a dry run.

    Nothing is sent anywhere. Input that cannot be mapped exits with status 1 and names the Stripe object,
    the field and the reason.
    """
    config = _config(config_file)
    snapshot, snapshot_time = _read_snapshot(snapshot_file)
    try:
        bundle = map_snapshot(snapshot, config, snapshot_time=snapshot_time)
    except MappingError as error:
        raise click.ClickException(f"{error.object_id}: {error.field}: {error.reason}") from None
    except CustomerExcluded as excluded:
        click.echo(f"{excluded.customer_id}: {excluded.reason}; nothing would be imported", err=True)
        return
    click.echo(bundle.model_dump_json(indent=2, exclude_none=True))


@click.group("config")
def config_group() -> None:
    """The mapping config."""


@config_group.command("check")
@click.argument("config_file", type=_existing_file)
def check_command(config_file: Path) -> None:
    """Validate a mapping config YAML; every problem is printed with the key it is about."""
    config = _config(config_file)
    overrides = len(config.plans.overrides)
    click.echo(
        f"{config_file}: valid mapping config (subscription_id={config.subscription_id.value}, "
        f"void={config.invoices.void.value}, uncollectible={config.invoices.uncollectible.value}, "
        f"metered={config.metered.value}, unpaid={config.unpaid.value}, "
        f"deleted_customers={config.deleted_customers.value}, {overrides} plan override(s))"
    )
