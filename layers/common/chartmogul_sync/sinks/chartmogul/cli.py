"""`cmsync dlq list|replay QUEUE`: the bad records and dead letters, with their reasons; replay after a fix.

Every error is one line and a non-zero exit (click's UsageError/ClickException), never a traceback: an unset queue
URL says which variable or `--stack` to give, a missing region says so, SQS refusing is quoted.
"""

import json
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from chartmogul_sync.config import Settings, get_settings
from chartmogul_sync.failures import FailureLedger, RecordFailure
from chartmogul_sync.state import StateTable

from .dlq import (
    AUDIT,
    EXPORT,
    QUEUE_NAMES,
    QUEUE_TAG,
    MessageFilter,
    QueuedMessage,
    QueueNotFound,
    ReplayTargets,
    failed_function_of,
    list_messages,
    queue_kind,
    queue_url_of_name,
    replay,
    resolve_terminal_queue,
    settings_from_stack,
)

_QUEUE_HELP = (
    f"QUEUE: {', '.join(QUEUE_NAMES)} (URLs from --stack, or the environment the functions use), or the SQS name "
    f"or URL of one of them (known by the settings, its {QUEUE_TAG} tag or the name CloudFormation gave it)."
)
_STAGES = ("export", "transform", "upload")
T = TypeVar("T")


def _stack_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--stack",
        "stack_name",
        default=None,
        metavar="NAME",
        help="Find the queue URLs, state table and the export and audit functions from this CloudFormation stack.",
    )(command)


def _filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in (
        click.option("--customer", default=None, help="Only this customer's messages (external id, cus_…)."),
        click.option("--stage", type=click.Choice(_STAGES), default=None, help="Only messages of this stage."),
        click.option("--reason", default=None, help="Only messages whose reason contains this text (any case)."),
    ):
        command = option(command)
    return command


class _Aws:
    """The clients one command needs, in the region the queue URLs name when none is configured."""

    def __init__(self, region: str | None) -> None:
        self.region = region

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region)

    def resource(self, service: str) -> Any:
        import boto3

        return boto3.resource(service, region_name=self.region)


def _region(*urls: str | None) -> str | None:
    import boto3

    configured = boto3.session.Session().region_name
    if configured:
        return str(configured)
    for url in urls:
        match = re.match(r"https?://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", url or "")
        if match:
            return match.group(1)
    return None


def _no_region() -> click.ClickException:
    return click.ClickException(
        "no AWS region: set AWS_DEFAULT_REGION (or AWS_REGION, or a profile's region), or pass a queue URL"
    )


def _prepare(queue: str, stack_name: str | None) -> tuple[Settings, _Aws, str, str]:
    """The settings (from the stack if given), the AWS clients, the queue URL and which terminal queue it is (one
    of QUEUE_NAMES, also for a URL or SQS name given alone: dlq.queue_kind); every problem a one-line error."""
    settings = get_settings()
    if stack_name is not None:
        region = _region()
        if region is None:
            raise _no_region()
        settings = _call(lambda: settings_from_stack(_Aws(region).client("cloudformation"), stack_name, settings))
    try:
        known_url = queue_url_of_name(queue, settings)
    except QueueNotFound as error:
        raise click.UsageError(str(error)) from error
    region = _region(known_url, settings.bad_records_queue_url)
    if region is None and not os.environ.get("AWS_ENDPOINT_URL"):
        raise _no_region()
    aws = _Aws(region)
    sqs = aws.client("sqs")
    url = _call(lambda: resolve_terminal_queue(queue, settings, sqs))
    kind = _call(lambda: queue_kind(queue, url, settings, sqs))
    return settings, aws, url, kind


def _label(queue: str, kind: str) -> str:
    """The queue as the output names it: its kind, and what was given when that was a URL or an SQS name."""
    return queue if queue == kind else f"{kind} ({queue})"


class _Failures:
    """Looks up dead letters' reasons in the state table; a table it cannot read is reported once, not raised."""

    def __init__(self, aws: _Aws, settings: Settings) -> None:
        self._ledger = FailureLedger(StateTable(aws.resource("dynamodb"), settings.state_table))
        self._table = settings.state_table
        self.problem: str | None = None

    def __call__(self, message_id: str) -> RecordFailure | None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self.problem is not None:
            return None
        try:
            return self._ledger.last_failure(message_id)
        except (BotoCoreError, ClientError) as error:
            self.problem = f"failure reasons could not be read from table {self._table} ({error})"
            return None


@click.group("dlq")
def dlq_group() -> None:
    """Show and replay the bad-records queue and the dead-letter queues."""


@dlq_group.command("list", epilog=_QUEUE_HELP)
@click.argument("queue")
@click.option("--max", "max_messages", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message, for scripts.")
@_filter_options
@_stack_option
def list_command(
    queue: str,
    max_messages: int,
    as_json: bool,
    reason: str | None,
    stage: str | None,
    customer: str | None,
    stack_name: str | None,
) -> None:
    """Show the messages of QUEUE with their reasons, without removing them."""
    settings, aws, url, kind = _prepare(queue, stack_name)
    failures = _Failures(aws, settings)
    only = MessageFilter(reason=reason, stage=stage, customer=customer)
    messages = _call(
        lambda: list_messages(
            aws.client("sqs"),
            url,
            max_messages,
            wait_s=1,
            failures=failures,
            only=only,
            failed_function=failed_function_of(kind),
        )
    )
    if failures.problem:
        click.echo(f"note: {failures.problem}", err=True)
    if as_json:
        for message in messages:
            click.echo(json.dumps(_as_dict(message)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{_label(queue, kind)}: {len(messages)} message(s)", show_lines=True)
    for column in ("stage", "customer", "object.field", "reason", "ChartMogul said"):
        table.add_column(column, overflow="fold")
    for message in messages:
        record = message.bad_record
        where = ".".join(p for p in (record.object_id, record.field) if p) if record else ""
        table.add_row(
            message.stage or "?" if record else f"{message.stage or '?'} ({message.kind or 'unknown message'})",
            message.customer_external_id or "?",
            where,
            message.reason,
            ((record.error_body or "") if record else "")[:400],
        )
    Console().print(table)


@dlq_group.command("replay", epilog=_QUEUE_HELP)
@click.argument("queue")
@click.option("--max", "max_messages", type=click.IntRange(1, 100_000), default=1_000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed where; send, invoke and delete nothing.")
@_filter_options
@_stack_option
def replay_command(
    queue: str,
    max_messages: int,
    dry_run: bool,
    reason: str | None,
    stage: str | None,
    customer: str | None,
    stack_name: str | None,
) -> None:
    """Send the messages of QUEUE back to the stage that failed on them (after fixing the cause)."""
    settings, aws, url, kind = _prepare(queue, stack_name)
    targets = ReplayTargets.from_settings(
        settings,
        invoke_export=_async_invoker(aws, settings.export_function_name) if settings.export_function_name else None,
        claim_check_exists=_claim_check_checker(aws),
        invoke_audit=_async_invoker(aws, settings.audit_function_name) if settings.audit_function_name else None,
    )
    only = MessageFilter(reason=reason, stage=stage, customer=customer)
    report = _call(
        lambda: replay(
            aws.client("sqs"),
            url,
            targets,
            max_messages,
            wait_s=1,
            only=only,
            dry_run=dry_run,
            failures=_Failures(aws, settings),
            failed_function=failed_function_of(kind),
        )
    )
    verb = "would replay" if dry_run else "replayed"
    for message, destination in report.replayed:
        where = {
            EXPORT: f"the export function {settings.export_function_name}",
            AUDIT: f"the audit function {settings.audit_function_name}",
        }.get(destination, destination)
        click.echo(f"{verb} {message.message_id} ({message.customer_external_id or '?'}) → {where}")
    for message, why in report.left:
        click.echo(f"left {message.message_id} ({message.customer_external_id or '?'}): {why}", err=True)
    click.echo(f"{len(report.replayed)} {verb}, {len(report.left)} left in {_label(queue, kind)}")
    if report.left:
        raise SystemExit(1)


def _async_invoker(aws: _Aws, function_name: str) -> Callable[[dict[str, Any]], None]:
    def invoke(event: dict[str, Any]) -> None:
        # Asynchronous, as the export and the audit are always invoked: either may run longer than a synchronous
        # call waits (15 minutes), and a failure goes to its on-failure destination again.
        aws.client("lambda").invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event))

    return invoke


def _claim_check_checker(aws: _Aws) -> Callable[[str, str], bool]:
    def exists(bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            aws.client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            # Only a definite "not there" blocks a replay; any other answer lets it try.
            return error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound")
        return True

    return exists


def _call(action: Callable[[], T]) -> T:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action()
    except QueueNotFound as error:
        raise click.ClickException(str(error)) from error
    except (BotoCoreError, ClientError) as error:
        # Configuration (no credentials) or AWS refusing: a message, not a traceback.
        raise click.ClickException(f"AWS: {error}") from error


def _as_dict(message: QueuedMessage) -> dict[str, Any]:
    record = message.bad_record
    return {
        "message_id": message.message_id,
        "receive_count": message.receive_count,
        "customer_external_id": message.customer_external_id,
        "stage": message.stage,
        "reason": message.reason,
        "bad_record": record.model_dump(mode="json") if record else None,
        "last_failure": message.failure.model_dump(mode="json") if message.failure else None,
        "export_event": message.export_event,
        "audit_event": message.audit_event,
        "kind": message.kind,
    }
