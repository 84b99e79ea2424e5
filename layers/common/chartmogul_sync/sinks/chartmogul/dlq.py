"""Look into the bad-records queue and the DLQs, and replay their messages after a fix.

Listing reads without deleting: messages are received with a short visibility timeout and made visible again at
once. Replaying moves each message back to the queue of the stage that failed on it (a bad record's
`original_body` to its stage's input queue; a dead letter to the queue it died on) and deletes it only after the
send succeeded, so a crash in between leaves a duplicate, never a loss; the stages are idempotent, so the
duplicate is harmless (docs/architecture.md "Failure handling").

Receive → send → delete works everywhere, moto included; the cloud's `StartMessageMoveTask` does not exist in moto
and knows nothing of bad records.

Every queue of the stack is understood, each with its reason:
- bad-records: a `BadRecord` (stage, object, field, reason, the API's answer);
- raw-dlq, upload-dlq: the envelope the redrive policy moved, with the last failure the function recorded for that
  message id (`chartmogul_sync.failures`; SQS keeps a message's id when it moves it to the DLQ);
- export-failed: Lambda's invocation record of an asynchronous export that failed all its attempts
  (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html): `requestContext.condition`,
  `requestPayload` (the export event) and `responsePayload` (`errorType`, `errorMessage`);
- audit-failed: Lambda's invocation record of a scheduled audit that failed (AuditFunction's on-failure destination),
  read like export-failed's: the reason from `requestContext.condition`, `responseContext.functionError` and
  `responsePayload`; replayed by invoking the audit function asynchronously with its `requestPayload`;
- schedule-dlq: the schedule's input that EventBridge Scheduler could not deliver, with its `ERROR_CODE` and
  `ERROR_MESSAGE` message attributes (https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html);
- stripe-events-dlq (only with the near-real-time path): a Stripe event (the EventBridge event the rule delivered,
  sources/stripe/realtime.py) the Stripe events function failed on 5 times, with the last failure it recorded for
  the message id as for raw-dlq, or one EventBridge could not deliver to the Stripe events queue, with the
  `ERROR_CODE` and `ERROR_MESSAGE` attributes EventBridge adds
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html). Replayed to the Stripe events queue.
An export event (export-failed, schedule-dlq, an export bad record) is replayed by invoking the export function
with it, asynchronously, as a person would.
"""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from chartmogul_sync.config import Settings
from chartmogul_sync.failures import RecordFailure
from chartmogul_sync.models.envelope import MessageKind
from chartmogul_sync.queues import BadRecord, Stage, load_json

# Receives per run are bounded: at most this many empty-handed or repeated receives in a row end a run.
_MAX_IDLE_RECEIVES = 2
# Long enough that one run never receives the same message twice, short enough that an interrupted run's
# messages come back soon.
_LISTING_VISIBILITY_S = 30
_REPLAY_VISIBILITY_S = 60

# The queues nothing consumes: what waits there waits for a person (`cmsync status` counts them as terminal).
QUEUE_NAMES = (
    "bad-records",
    "raw-dlq",
    "upload-dlq",
    "export-failed",
    "schedule-dlq",
    "stripe-events-dlq",
    "audit-failed",
)
# The terminal queues where a customer's record can wait: what the audit reads to name a customer missing from
# ChartMogul "waiting in a dead-letter queue" (audit-failed holds failed audits, never a customer's record).
RECORD_QUEUES = tuple(name for name in QUEUE_NAMES if name != "audit-failed")
# The template's logical id of each queue name (cmsync dlq --stack finds their URLs through CloudFormation). The
# Stripe events queue and its DLQ exist only with the near-real-time path (StripePartnerEventSourceName).
STACK_QUEUES = {
    "bad-records": "BadRecordsQueue",
    "raw": "RawQueue",
    "upload": "UploadQueue",
    "raw-dlq": "RawDeadLetterQueue",
    "upload-dlq": "UploadDeadLetterQueue",
    "export-failed": "ExportFailedQueue",
    "schedule-dlq": "ScheduleDeadLetterQueue",
    "stripe-events": "StripeEventsQueue",
    "stripe-events-dlq": "StripeEventsDeadLetterQueue",
    "audit-failed": "AuditFailedQueue",
}
# The DLQs found through their work queue's RedrivePolicy.
DLQ_SOURCES = {"raw-dlq": "raw", "upload-dlq": "upload", "stripe-events-dlq": "stripe-events"}
# The tag template.yaml puts on each terminal queue, its value the queue's name in QUEUE_NAMES: how a queue given
# by URL or SQS name alone is known. CloudFormation's own `aws:cloudformation:logical-id` tag would do, but SQS
# queues do not get it (https://github.com/aws-cloudformation/cloudformation-coverage-roadmap/issues/652).
QUEUE_TAG = "chartmogul-sync:queue"
# The last failure recorded for a message id (failures.FailureLedger.last_failure), if any.
FailureLookup = Callable[[str], RecordFailure | None]
# Invokes a function (the export, the audit) asynchronously with an event (the CLI: Lambda's Invoke,
# InvocationType=Event).
ExportInvoker = Callable[[dict[str, Any]], None]
# Which function's invocation records a queue holds: the export's (export-failed) or the audit's (audit-failed).
FailedFunction = Literal["export", "audit"]


class QueueNotFound(ValueError):
    pass


class LiveQueueRefused(QueueNotFound):
    """Listing or replaying a queue a function consumes would count as receives and could dead-letter it."""


class UnknownQueue(QueueNotFound):
    """A queue given by URL or SQS name that is none of the stack's terminal queues, as far as anything says."""


def resolve_terminal_queue(name_or_url: str, settings: Settings, sqs: Any) -> str:
    """Like `resolve_queue`, but only for a queue nothing consumes: bad-records, a DLQ.

    Every listing receives the messages it shows; on a work queue with a redrive policy that counts towards
    `maxReceiveCount`, so a few listings would move a healthy message to the DLQ.
    """
    url = resolve_queue(name_or_url, settings, sqs)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    if "RedrivePolicy" in attributes:
        raise LiveQueueRefused(
            f"{name_or_url} is a work queue a function consumes (it has a dead-letter queue): listing it would count "
            f"as receives and could dead-letter healthy messages; give {', '.join(QUEUE_NAMES)} instead"
        )
    return url


def resolve_queue(name_or_url: str, settings: Settings, sqs: Any) -> str:
    """A queue URL from a template name (`bad-records`, `raw-dlq`, `upload-dlq`, `stripe-events-dlq`, and the work
    queues `raw`, `upload`, `stripe-events`), a queue name or a URL."""
    direct = _direct_url(name_or_url, settings)
    if direct is not None:
        return direct
    if name_or_url in DLQ_SOURCES:
        source = resolve_queue(DLQ_SOURCES[name_or_url], settings, sqs)
        return dead_letter_queue_of(sqs, source)
    try:
        return str(sqs.get_queue_url(QueueName=name_or_url)["QueueUrl"])
    except Exception as error:  # botocore's QueueDoesNotExist and the like: say what can be given instead
        raise QueueNotFound(
            f"no queue {name_or_url!r}: give one of {', '.join(QUEUE_NAMES)}, a queue name or a queue URL"
        ) from error


def _direct_url(name_or_url: str, settings: Settings) -> str | None:
    """A URL as given, or the configured URL of a template name; None when neither (QueueNotFound when unset)."""
    if name_or_url.startswith(("http://", "https://")):
        return name_or_url
    configured = configured_queue_urls(settings)
    if name_or_url not in configured:
        return None
    variable, url = configured[name_or_url]
    if not url:
        raise QueueNotFound(unset_queue_message(name_or_url, variable))
    return url


def configured_queue_urls(settings: Settings) -> dict[str, tuple[str, str]]:
    """Queue name → (environment variable, URL or "") for the queues the settings name directly."""
    return {
        "bad-records": ("BAD_RECORDS_QUEUE_URL", settings.bad_records_queue_url),
        "raw": ("RAW_QUEUE_URL", settings.raw_queue_url),
        "upload": ("UPLOAD_QUEUE_URL", settings.upload_queue_url),
        "export-failed": ("EXPORT_FAILED_QUEUE_URL", settings.export_failed_queue_url),
        "schedule-dlq": ("SCHEDULE_DEAD_LETTER_QUEUE_URL", settings.schedule_dead_letter_queue_url),
        "stripe-events": ("STRIPE_EVENTS_QUEUE_URL", settings.stripe_events_queue_url),
        "audit-failed": ("AUDIT_FAILED_QUEUE_URL", settings.audit_failed_queue_url),
    }


def unset_queue_message(name: str, variable: str) -> str:
    if name == "stripe-events":
        # Optional in the template: a stack deployed without the near-real-time path has neither queue.
        return (
            f"no Stripe events queue for {name!r}: a stack has one only when deployed with "
            f"StripePartnerEventSourceName (the near-real-time path); without --stack, export {variable} or pass "
            "the queue URL"
        )
    return (
        f"{variable} is not set, so {name!r} has no queue URL: give --stack STACK_NAME (the URLs are read from "
        f"CloudFormation), export {variable} (the stack's {STACK_QUEUES.get(name, name)}), or pass the queue URL"
    )


def queue_url_of_name(name_or_url: str, settings: Settings) -> str | None:
    """The URL a name resolves to without asking SQS (None: a DLQ found through its source, or a queue name)."""
    direct = _direct_url(name_or_url, settings)
    if direct is not None:
        return direct
    if name_or_url in DLQ_SOURCES:
        return queue_url_of_name(DLQ_SOURCES[name_or_url], settings)
    return None


def failed_function_of(queue: str) -> FailedFunction:
    """Whose invocation records a terminal queue (one of QUEUE_NAMES, `queue_kind`) holds: the audit's in
    audit-failed, else the export's (Lambda's record names only a function ARN; the queue says which of our
    functions failed)."""
    return "audit" if queue == "audit-failed" else "export"


def queue_kind(name_or_url: str, url: str, settings: Settings, sqs: Any) -> str:
    """Which of QUEUE_NAMES the terminal queue at `url` is (given as `name_or_url`), from the first that says:

    1. the name given (`audit-failed`);
    2. the settings (`--stack` or the environment): the URL they give a queue, or the DLQ of a work queue's
       RedrivePolicy;
    3. the queue's QUEUE_TAG, which template.yaml sets on every terminal queue;
    4. the name CloudFormation generates for it, `<stack>-<LogicalId>-<random>`
       (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-name.html), for a
       stack deployed before the tags (the local runtime's `<stack>-<LogicalId>` too).

    UnknownQueue, naming the queue, when none does: read as the wrong kind, an audit's failed invocation would be
    replayed as an export's."""
    if name_or_url in QUEUE_NAMES:
        return name_or_url
    for name, (_, configured) in configured_queue_urls(settings).items():
        if configured and configured == url and name in QUEUE_NAMES:
            return name
    for name, source in DLQ_SOURCES.items():
        source_url = configured_queue_urls(settings)[source][1]
        if source_url and _dead_letter_queue_or_none(sqs, source_url) == url:
            return name
    tagged, tags_unread = _tagged_kind(sqs, url)
    if tagged is not None:
        return tagged
    queue_name = url.rstrip("/").rsplit("/", 1)[-1]
    named = kind_of_generated_name(queue_name)
    if named is not None:
        return named
    unread = f" (its tags could not be read: {tags_unread})" if tags_unread else ""
    raise UnknownQueue(
        f"queue {name_or_url!r} is none of this stack's terminal queues: neither the settings, its tag {QUEUE_TAG} "
        f"nor its name say which{unread}; give one of {', '.join(QUEUE_NAMES)} (with --stack or its variable)"
    )


def kind_of_generated_name(queue_name: str) -> str | None:
    """The terminal queue a CloudFormation-generated SQS name is of (`<stack>-AuditFailedQueue-1A2B3C` →
    audit-failed), None when it is none of them."""
    for name in QUEUE_NAMES:
        if re.fullmatch(rf".+-{STACK_QUEUES[name]}(-[A-Za-z0-9]+)?", queue_name, flags=re.IGNORECASE):
            return name
    return None


def _tagged_kind(sqs: Any, url: str) -> tuple[str | None, str | None]:
    """(the queue's QUEUE_TAG if it names a terminal queue, why the tags could not be read)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags") or {}
    except (BotoCoreError, ClientError) as error:  # no sqs:ListQueueTags, say: the name may still tell
        return None, str(error)
    value = tags.get(QUEUE_TAG)
    return (value if value in QUEUE_NAMES else None), None


def _dead_letter_queue_or_none(sqs: Any, source_url: str) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return dead_letter_queue_of(sqs, source_url)
    except (QueueNotFound, BotoCoreError, ClientError, KeyError, ValueError):
        return None


def settings_from_stack(cloudformation: Any, stack_name: str, settings: Settings) -> Settings:
    """The settings with every queue URL, the state table and the export and audit functions of a deployed stack,
    read from CloudFormation (ListStackResources: the physical id of a queue is its URL, of a table or function
    its name)."""
    physical: dict[str, str] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for resource in page.get("StackResourceSummaries", []):
            physical[resource["LogicalResourceId"]] = resource.get("PhysicalResourceId", "")
    wanted = {
        "bad_records_queue_url": "BadRecordsQueue",
        "raw_queue_url": "RawQueue",
        "upload_queue_url": "UploadQueue",
        "export_failed_queue_url": "ExportFailedQueue",
        "schedule_dead_letter_queue_url": "ScheduleDeadLetterQueue",
        "stripe_events_queue_url": "StripeEventsQueue",
        "audit_failed_queue_url": "AuditFailedQueue",
        "state_table": "StateTable",
        "export_function_name": "ExportFunction",
        "audit_function_name": "AuditFunction",
    }
    found = {setting: physical[logical] for setting, logical in wanted.items() if physical.get(logical)}
    if not found:
        raise QueueNotFound(
            f"stack {stack_name!r} has none of this application's resources ({', '.join(wanted.values())})"
        )
    return settings.model_copy(update=found)


def dead_letter_queue_of(sqs: Any, source_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    if "RedrivePolicy" not in attributes:
        raise QueueNotFound(f"{source_url} has no dead-letter queue (no RedrivePolicy)")
    arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    _, _, _, _, account, name = arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


@dataclass(frozen=True)
class QueuedMessage:
    """One message of a bad-records queue or DLQ, as a person needs to see it."""

    message_id: str
    receive_count: int
    body: str
    bad_record: BadRecord | None  # None: not a bad record (a dead letter, an export or schedule failure)
    customer_external_id: str | None
    # customer_snapshot / customer_bundle for dead letters; export_failure / audit_failure / schedule_failure;
    # stripe_event
    kind: str | None
    # Dead letters: the last failure the function recorded for this message id (failures.py).
    failure: RecordFailure | None = None
    # Export and schedule failures: why the invocation failed, and the export event to invoke again.
    failure_reason: str | None = None
    export_event: dict[str, Any] | None = None
    # Audit failures: the event the audit was invoked with, to invoke it again.
    audit_event: dict[str, Any] | None = None

    @property
    def stage(self) -> str | None:
        if self.bad_record is not None:
            return self.bad_record.stage.value
        if self.failure is not None:
            return self.failure.stage.value
        if self.kind in (EXPORT_FAILURE, SCHEDULE_FAILURE, STRIPE_EVENT):
            return Stage.EXPORT.value
        if self.kind == AUDIT_FAILURE:
            return "audit"  # not a stage of the pipeline: the scheduled audit beside it
        if self.kind == MessageKind.CUSTOMER_SNAPSHOT:
            return Stage.TRANSFORM.value
        if self.kind == MessageKind.CUSTOMER_BUNDLE:
            return Stage.UPLOAD.value
        return None

    @property
    def reason(self) -> str:
        if self.bad_record is not None:
            return self.bad_record.reason
        if self.failure_reason is not None:
            return self.failure_reason
        if self.failure is not None:
            return self.failure.summary()
        return (
            f"no failure reason recorded for message {self.message_id} (received {self.receive_count} times, "
            "listings included): it failed before this release kept reasons, or its record expired; the "
            "function's logs have each error under its message id"
        )


EXPORT_FAILURE = "export_failure"
AUDIT_FAILURE = "audit_failure"
SCHEDULE_FAILURE = "schedule_failure"
STRIPE_EVENT = "stripe_event"  # an EventBridge event carrying a Stripe event (the Stripe events queue's messages)


def describe(
    message: dict[str, Any], failures: FailureLookup | None = None, failed_function: FailedFunction = "export"
) -> QueuedMessage:
    """A message of a terminal queue as a person needs to see it; `failed_function`: whose Lambda invocation
    records the queue holds (failed_function_of its queue_kind)."""
    body = message["Body"]
    message_id = message["MessageId"]
    receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    try:
        record = BadRecord.model_validate_json(body)
        return QueuedMessage(message_id, receive_count, body, record, record.customer_external_id, None)
    except ValidationError:
        pass
    try:
        parsed = load_json(body)
    except ValueError:
        parsed = None
    fields = parsed if isinstance(parsed, dict) else {}
    if isinstance(fields.get("requestContext"), dict) and "requestPayload" in fields:
        if failed_function == "audit":
            return _audit_failure(message_id, receive_count, body, fields)
        return _export_failure(message_id, receive_count, body, fields)
    attributes = message.get("MessageAttributes") or {}
    if _is_stripe_event(fields):  # before the schedule's: EventBridge's DLQ uses the same two attributes
        return _stripe_event(message_id, receive_count, body, fields, attributes, failures)
    if "ERROR_CODE" in attributes or "ERROR_MESSAGE" in attributes:
        return _schedule_failure(message_id, receive_count, body, fields, attributes)
    customer = fields.get("customer_external_id")
    kind = fields.get("kind")
    return QueuedMessage(
        message_id,
        receive_count,
        body,
        None,
        customer if isinstance(customer, str) else None,
        kind if isinstance(kind, str) else None,
        failure=failures(message_id) if failures is not None else None,
    )


def invocation_failure_reason(function: str, record: dict[str, Any]) -> str:
    """Why an asynchronous invocation failed, from Lambda's on-failure destination record
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html): `requestContext.condition`
    (RetriesExhausted, EventAgeExceeded) and its attempts, the error the function returned (`responsePayload`),
    or else `responseContext.functionError` (Unhandled: a timeout or out-of-memory leaves no payload)."""
    context = record["requestContext"]
    payload = record.get("responsePayload")
    response: dict[str, Any] = payload if isinstance(payload, dict) else {}
    error = ": ".join(str(part) for part in (response.get("errorType"), response.get("errorMessage")) if part)
    if not error:
        response_context = record.get("responseContext")
        function_error = response_context.get("functionError") if isinstance(response_context, dict) else None
        error = f"{function_error} function error, " if function_error else ""
        error += "no error message (a timeout or out-of-memory leaves none)"
    return (
        f"{function} invocation failed ({context.get('condition', '?')} after "
        f"{context.get('approximateInvokeCount', '?')} attempt(s)): {error}"
    )


def _export_failure(message_id: str, receive_count: int, body: str, record: dict[str, Any]) -> QueuedMessage:
    """Lambda's on-failure destination record of an asynchronous export invocation."""
    event = record.get("requestPayload")
    reason = invocation_failure_reason("export", record)
    customer = event.get("customer_id") if isinstance(event, dict) else None
    return QueuedMessage(
        message_id,
        receive_count,
        body,
        None,
        customer if isinstance(customer, str) else None,
        EXPORT_FAILURE,
        failure_reason=reason,
        export_event=event if isinstance(event, dict) else None,
    )


def _audit_failure(message_id: str, receive_count: int, body: str, record: dict[str, Any]) -> QueuedMessage:
    """Lambda's on-failure destination record of a scheduled audit: no customer's record, the audit itself."""
    event = record.get("requestPayload")
    return QueuedMessage(
        message_id,
        receive_count,
        body,
        None,
        None,
        AUDIT_FAILURE,
        failure_reason=invocation_failure_reason("audit", record),
        audit_event=event if isinstance(event, dict) else None,
    )


def _is_stripe_event(fields: dict[str, Any]) -> bool:
    """An EventBridge event from a Stripe partner event source (sources/stripe/realtime.py reads the same)."""
    source = fields.get("source")
    return isinstance(source, str) and source.startswith("aws.partner/stripe.com/") and "detail-type" in fields


def _stripe_event(
    message_id: str,
    receive_count: int,
    body: str,
    event: dict[str, Any],
    attributes: dict[str, Any],
    failures: FailureLookup | None,
) -> QueuedMessage:
    """A Stripe event of the Stripe events DLQ: one the function failed on (its recorded last failure), or one
    EventBridge could not deliver to the queue (its error attributes)."""
    from chartmogul_sync.sources.stripe.events import CustomerChanged, CustomerDeleted, event_target

    detail = event.get("detail")
    customer: str | None = None
    what = f"Stripe event {event.get('detail-type', '?')}"
    if isinstance(detail, dict):
        what = f"Stripe event {detail.get('id', '?')} ({detail.get('type', event.get('detail-type', '?'))})"
        data = detail.get("data")
        if isinstance(data, dict) and isinstance(data.get("object"), dict):
            target = event_target(detail)
            if isinstance(target, CustomerChanged | CustomerDeleted):
                customer = target.customer_id
    undelivered = None
    if "ERROR_CODE" in attributes or "ERROR_MESSAGE" in attributes:
        code, error = _attribute(attributes, "ERROR_CODE") or "?", _attribute(attributes, "ERROR_MESSAGE")
        undelivered = (
            f"EventBridge could not deliver {what} to the Stripe events queue ({code}): {error or 'no message'}"
        )
    return QueuedMessage(
        message_id,
        receive_count,
        body,
        None,
        customer,
        STRIPE_EVENT,
        failure=failures(message_id) if failures is not None and undelivered is None else None,
        failure_reason=undelivered,
    )


def _attribute(attributes: dict[str, Any], name: str) -> str:
    value = attributes.get(name) or {}
    return str(value.get("StringValue", "")) if isinstance(value, dict) else ""


def _schedule_failure(
    message_id: str, receive_count: int, body: str, event: dict[str, Any], attributes: dict[str, Any]
) -> QueuedMessage:
    """A schedule's input EventBridge Scheduler could not deliver, with its error attributes."""

    def attribute(name: str) -> str:
        return _attribute(attributes, name)

    reason = (
        f"the schedule could not invoke the export ({attribute('ERROR_CODE') or '?'}): "
        f"{attribute('ERROR_MESSAGE') or 'no error message'}"
    )
    return QueuedMessage(
        message_id,
        receive_count,
        body,
        None,
        None,
        SCHEDULE_FAILURE,
        failure_reason=reason,
        export_event=event or None,
    )


@dataclass(frozen=True)
class MessageFilter:
    """Which messages a listing or replay is about; every given criterion must match."""

    reason: str | None = None  # a case-insensitive part of the reason
    stage: str | None = None
    customer: str | None = None

    def matches(self, message: QueuedMessage) -> bool:
        if self.reason is not None and self.reason.lower() not in message.reason.lower():
            return False
        if self.stage is not None and message.stage != self.stage:
            return False
        return self.customer is None or message.customer_external_id == self.customer


def _receive(sqs: Any, queue_url: str, wanted: int, visibility_s: int, wait_s: int) -> Iterator[dict[str, Any]]:
    """Messages from the queue, each at most once per call, until `wanted` or the queue stops giving new ones."""
    seen: set[str] = set()
    idle = 0
    while len(seen) < wanted and idle < _MAX_IDLE_RECEIVES:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, wanted - len(seen)),
            VisibilityTimeout=visibility_s,
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        fresh = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
        idle = 0 if fresh else idle + 1
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def list_messages(
    sqs: Any,
    queue_url: str,
    max_messages: int = 100,
    wait_s: int = 0,
    *,
    failures: FailureLookup | None = None,
    only: MessageFilter | None = None,
    failed_function: FailedFunction = "export",
) -> list[QueuedMessage]:
    """Up to `max_messages` messages of the queue (those `only` matches), left in it (visible again at once)."""
    received = list(_receive(sqs, queue_url, max_messages, _LISTING_VISIBILITY_S, wait_s))
    _make_visible(sqs, queue_url, received)
    described = [describe(m, failures, failed_function) for m in received]
    return [m for m in described if only is None or only.matches(m)]


def _make_visible(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
            ],
        )


@dataclass(frozen=True)
class ReplayTargets:
    """Where each stage's messages are replayed to: its input queue, or an invocation of the export function (or of
    the audit function, for a failed audit)."""

    raw_queue_url: str
    upload_queue_url: str
    invoke_export: ExportInvoker | None = None
    # Checks that a claim check's S3 object still exists (None: not checked).
    claim_check_exists: Callable[[str, str], bool] | None = None
    # Where a Stripe event of the Stripe events DLQ goes back to ("" without the near-real-time path).
    stripe_events_queue_url: str = ""
    # Invokes the audit function asynchronously (a failed audit of audit-failed); None: not configured.
    invoke_audit: ExportInvoker | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        invoke_export: ExportInvoker | None = None,
        claim_check_exists: Callable[[str, str], bool] | None = None,
        invoke_audit: ExportInvoker | None = None,
    ) -> "ReplayTargets":
        return cls(
            raw_queue_url=settings.raw_queue_url,
            upload_queue_url=settings.upload_queue_url,
            invoke_export=invoke_export,
            claim_check_exists=claim_check_exists,
            stripe_events_queue_url=settings.stripe_events_queue_url,
            invoke_audit=invoke_audit,
        )

    def destination(self, message: QueuedMessage) -> tuple[str | None, str, str]:
        """(queue URL, "export" for an invocation, or None; body to send; why / why not)."""
        if message.bad_record is not None:
            stage = message.bad_record.stage
            body = message.bad_record.original_body
            if stage is Stage.TRANSFORM:
                return self._to_queue(self.raw_queue_url, body, "to the transform (raw queue)", message)
            if stage is Stage.UPLOAD:
                return self._to_queue(self.upload_queue_url, body, "to the upload queue", message)
            return self._to_export(_event_of(body), message)
        if message.kind in (EXPORT_FAILURE, SCHEDULE_FAILURE):
            return self._to_export(message.export_event, message)
        if message.kind == AUDIT_FAILURE:
            return self._to_audit(message.audit_event)
        if message.kind == MessageKind.CUSTOMER_SNAPSHOT:
            return self._to_queue(self.raw_queue_url, message.body, "to the transform (raw queue)", message)
        if message.kind == MessageKind.CUSTOMER_BUNDLE:
            return self._to_queue(self.upload_queue_url, message.body, "to the upload queue", message)
        if message.kind == STRIPE_EVENT:
            # The event as EventBridge delivered it: the Stripe events function reads it again, and skips its
            # customer if a newer snapshot was exported meanwhile (sources/stripe/exported.py).
            return self._to_queue(self.stripe_events_queue_url, message.body, "to the Stripe events queue", message)
        return None, "", "not a message of ours (neither a bad record nor an envelope): left in place"

    def _to_queue(self, url: str, body: str, where: str, message: QueuedMessage) -> tuple[str | None, str, str]:
        if not url:
            return None, "", f"no queue configured {where}: left in place"
        gone = self._missing_claim_check(body)
        if gone is not None:
            customer = message.customer_external_id or "the customer"
            event = json.dumps({"mode": "customer", "customer_id": customer})
            return (
                None,
                "",
                f"its claim check {gone} is gone from S3, so a replay cannot succeed: export {customer} again "
                f"(invoke the export function with {event}); left in place",
            )
        return url, body, where

    def _to_export(self, event: dict[str, Any] | None, message: QueuedMessage) -> tuple[str | None, str, str]:
        from chartmogul_sync.sources.stripe.invocation import InvalidExportRequest, parse_export_request

        if event is None:
            return None, "", "no export event to invoke again: left in place"
        try:
            parse_export_request(event)
        except InvalidExportRequest as error:
            return None, "", f"invoking the export again cannot succeed, the event itself is invalid ({error}); left"
        body = json.dumps(event, separators=(",", ":"))
        if self.invoke_export is None:
            return (
                None,
                "",
                f"an export failure: no export function configured (give --stack or EXPORT_FUNCTION_NAME); once the "
                f"cause is fixed, invoke the export function asynchronously with {body}; left in place",
            )
        return EXPORT, body, "to the export function (asynchronous invocation)"

    def _to_audit(self, event: dict[str, Any] | None) -> tuple[str | None, str, str]:
        """The audit's own event again (the schedule's input): the audit reads, so running it twice is harmless."""
        if event is None:
            return None, "", "no audit event in the invocation record to invoke again: left in place"
        body = json.dumps(event, separators=(",", ":"))
        if self.invoke_audit is None:
            return (
                None,
                "",
                f"an audit failure: no audit function configured (give --stack or AUDIT_FUNCTION_NAME); once the "
                f"cause is fixed, invoke the audit function asynchronously with {body}; left in place",
            )
        return AUDIT, body, "to the audit function (asynchronous invocation)"

    def _missing_claim_check(self, body: str) -> str | None:
        if self.claim_check_exists is None:
            return None
        try:
            check = load_json(body).get("claim_check")
        except (ValueError, AttributeError):
            return None
        if (
            not isinstance(check, dict)
            or not isinstance(check.get("bucket"), str)
            or not isinstance(check.get("key"), str)
        ):
            return None
        if self.claim_check_exists(check["bucket"], check["key"]):
            return None
        return f"s3://{check['bucket']}/{check['key']}"


EXPORT = "export"  # ReplayTargets.destination: invoke the export function instead of sending to a queue
AUDIT = "audit"  # ReplayTargets.destination: invoke the audit function


def _event_of(body: str) -> dict[str, Any] | None:
    try:
        event = load_json(body)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


@dataclass
class ReplayReport:
    replayed: list[tuple[QueuedMessage, str]] = field(default_factory=list)  # (message, destination)
    left: list[tuple[QueuedMessage, str]] = field(default_factory=list)  # (message, why it stays)
    dry_run: bool = False


def replay(
    sqs: Any,
    queue_url: str,
    targets: ReplayTargets,
    max_messages: int = 1_000,
    wait_s: int = 0,
    *,
    only: MessageFilter | None = None,
    dry_run: bool = False,
    failures: FailureLookup | None = None,
    failed_function: FailedFunction = "export",
) -> ReplayReport:
    """Move up to `max_messages` messages back to their stage (send first, delete after); `dry_run`: only say so."""
    report = ReplayReport(dry_run=dry_run)
    kept: list[dict[str, Any]] = []
    for raw in _receive(sqs, queue_url, max_messages, _REPLAY_VISIBILITY_S, wait_s):
        message = describe(raw, failures, failed_function)
        if only is not None and not only.matches(message):
            kept.append(raw)
            continue
        destination, body, why = targets.destination(message)
        if destination is None:
            report.left.append((message, why))
            kept.append(raw)
            continue
        if dry_run:
            report.replayed.append((message, destination))
            kept.append(raw)
            continue
        if destination == EXPORT:
            assert targets.invoke_export is not None  # destination() says EXPORT only with an invoker
            targets.invoke_export(json.loads(body))
        elif destination == AUDIT:
            assert targets.invoke_audit is not None  # destination() says AUDIT only with an invoker
            targets.invoke_audit(json.loads(body))
        else:
            sqs.send_message(QueueUrl=destination, MessageBody=body)
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=raw["ReceiptHandle"])
        report.replayed.append((message, destination))
    _make_visible(sqs, queue_url, kept)
    return report
