"""`cmsync dlq list|replay QUEUE`: the bad records and dead letters, with their reasons; replay after a fix."""

import json
from typing import Any

import click

from chartmogul_sync.config import get_settings

from .dlq import (
    QUEUE_NAMES,
    QueuedMessage,
    QueueNotFound,
    ReplayTargets,
    list_messages,
    replay,
    resolve_terminal_queue,
)

_QUEUE_HELP = f"QUEUE: {', '.join(QUEUE_NAMES)} (from the environment the functions use), a queue name or URL."


def _sqs() -> Any:
    import boto3

    return boto3.client("sqs")


def _queue_url(queue: str, sqs: Any) -> str:
    try:
        return resolve_terminal_queue(queue, get_settings(), sqs)
    except QueueNotFound as error:
        raise click.ClickException(str(error)) from error


@click.group("dlq")
def dlq_group() -> None:
    """Show and replay the bad-records queue and the dead-letter queues."""


@dlq_group.command("list", epilog=_QUEUE_HELP)
@click.argument("queue")
@click.option("--max", "max_messages", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message, for scripts.")
def list_command(queue: str, max_messages: int, as_json: bool) -> None:
    """Show the messages of QUEUE with their reasons, without removing them."""
    sqs = _call(_sqs)
    url = _call(lambda: _queue_url(queue, sqs))
    messages = _call(lambda: list_messages(sqs, url, max_messages, wait_s=1))
    if as_json:
        for message in messages:
            click.echo(json.dumps(_as_dict(message)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{queue}: {len(messages)} message(s)", show_lines=True)
    for column in ("stage", "customer", "object.field", "reason", "ChartMogul said"):
        table.add_column(column, overflow="fold")
    for message in messages:
        record = message.bad_record
        where = ".".join(p for p in (record.object_id, record.field) if p) if record else ""
        table.add_row(
            record.stage.value if record else f"dead letter ({message.kind or '?'})",
            message.customer_external_id or "?",
            where,
            message.reason,
            ((record.error_body or "") if record else "")[:400],
        )
    Console().print(table)


@dlq_group.command("replay", epilog=_QUEUE_HELP)
@click.argument("queue")
@click.option("--max", "max_messages", type=click.IntRange(1, 100_000), default=1_000, show_default=True)
def replay_command(queue: str, max_messages: int) -> None:
    """Send the messages of QUEUE back to the stage that failed on them (after fixing the cause)."""
    sqs = _call(_sqs)
    url = _call(lambda: _queue_url(queue, sqs))
    report = _call(lambda: replay(sqs, url, ReplayTargets.from_settings(get_settings()), max_messages, wait_s=1))
    for message, destination in report.replayed:
        click.echo(f"replayed {message.message_id} ({message.customer_external_id or '?'}) → {destination}")
    for message, why in report.left:
        click.echo(f"left {message.message_id} ({message.customer_external_id or '?'}): {why}", err=True)
    click.echo(f"{len(report.replayed)} replayed, {len(report.left)} left in {queue}")
    if report.left:
        raise SystemExit(1)


def _call(action: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action()
    except (BotoCoreError, ClientError) as error:
        # Configuration (no region, no credentials) or SQS refusing: a message, not a traceback.
        raise click.ClickException(f"SQS: {error}") from error


def _as_dict(message: QueuedMessage) -> dict[str, Any]:
    record = message.bad_record
    return {
        "message_id": message.message_id,
        "receive_count": message.receive_count,
        "customer_external_id": message.customer_external_id,
        "reason": message.reason,
        "bad_record": record.model_dump(mode="json") if record else None,
        "kind": message.kind,
    }
