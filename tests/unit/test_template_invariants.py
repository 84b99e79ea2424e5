"""Invariants of template.yaml that cfn-lint does not check, each proven able to fail on a mutated copy.

Sources: docs/sources.md#aws-sqs-lambda (SQS → Lambda), #aws-scheduler (Scheduler), #aws-pitfalls (pitfalls),
#aws-fault-tests item 9.

How queues are classified: a queue some function polls (an SQS event) is a *work* queue and needs a DLQ through
its RedrivePolicy. A queue nothing polls is *terminal* (dead-letter class): the raw and upload DLQs, the
bad-records queue, the Scheduler DLQ and the export on-failure destination. Nothing reads a terminal queue
automatically, so instead of a DLQ it needs an alarm on its depth and the longest retention (14 days).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint

from localdev.aws.resources import parameter_values
from localdev.aws.template import DEFAULT_TEMPLATE, SECRET_TYPE, TABLE_TYPE, Template

MIN_MAX_RECEIVE_COUNT = 5  # AWS: "at least 5" (docs/sources.md#aws-sqs-lambda)
VISIBILITY_TO_TIMEOUT_RATIO = 6  # AWS: visibility timeout >= 6x the function timeout (docs/sources.md#aws-sqs-lambda)
CHARTMOGUL_MAX_CONNECTIONS = 20  # docs/architecture.md "Upload modes"
SQS_MAX_RETENTION_SECONDS = 1_209_600
UPLOAD_FUNCTION = "UploadFunction"
# IAM access level "Read"/"List" verbs; any other verb (or a wildcard) may write.
READ_ONLY_VERB_PREFIXES = ("Get", "List", "Describe", "BatchGet", "Query", "Scan", "Head")
# SAM policy templates this template may use, and the parameter that scopes each to one resource.
SCOPED_POLICY_TEMPLATES = {
    "SQSSendMessagePolicy": "QueueName",
    "SQSPollerPolicy": "QueueName",
    "DynamoDBCrudPolicy": "TableName",
    "DynamoDBReadPolicy": "TableName",
    "DynamoDBWritePolicy": "TableName",
    "S3ReadPolicy": "BucketName",
    "S3WritePolicy": "BucketName",
    "S3CrudPolicy": "BucketName",
    "AWSSecretsManagerGetSecretValuePolicy": "SecretArn",
    "LambdaInvokePolicy": "FunctionName",
}

Rule = Callable[[Template], list[str]]


# ------------------------------------------------------------------------------------------------ rules
def partial_batch_response(t: Template) -> list[str]:
    """Every SQS trigger reports batch item failures, so one bad record does not retry its whole batch."""
    return [
        f"{f.logical_id}.{e.name}: FunctionResponseTypes lacks ReportBatchItemFailures"
        for f in t.functions.values()
        for e in f.sqs_events
        if not e.reports_batch_item_failures
    ]


def work_queues_have_dlq(t: Template) -> list[str]:
    """A polled queue sends a message that keeps failing to a DLQ, after at least 5 receives."""
    problems = []
    for queue in t.queues.values():
        if not t.consumers_of(queue.logical_id):
            continue
        redrive = queue.redrive
        if redrive is None:
            problems.append(f"{queue.logical_id}: polled by a function but has no RedrivePolicy")
        elif redrive.dead_letter_queue not in t.queues:
            problems.append(f"{queue.logical_id}: RedrivePolicy target {redrive.dead_letter_queue} is not a queue")
        elif redrive.max_receive_count < MIN_MAX_RECEIVE_COUNT:
            problems.append(f"{queue.logical_id}: maxReceiveCount {redrive.max_receive_count} < 5")
    return problems


def visibility_covers_consumer_timeout(t: Template) -> list[str]:
    """cfn-lint does not catch this; Lambda rejects the event source mapping at deploy (docs/sources.md#aws-sqs-lambda,
    #aws-pitfalls)."""
    return [
        f"{queue.logical_id}: VisibilityTimeout {queue.visibility_timeout} < "
        f"{VISIBILITY_TO_TIMEOUT_RATIO} x {function.logical_id}.Timeout {function.timeout}"
        for queue in t.queues.values()
        for function, _ in t.consumers_of(queue.logical_id)
        if queue.visibility_timeout < VISIBILITY_TO_TIMEOUT_RATIO * function.timeout
    ]


def upload_concurrency_within_chartmogul_limit(t: Template) -> list[str]:
    """Upload's MaximumConcurrency is set and can never exceed ChartMogul's 20 parallel connections."""
    upload = t.functions.get(UPLOAD_FUNCTION)
    if upload is None or not upload.sqs_events:
        return [f"{UPLOAD_FUNCTION}: no SQS trigger"]
    problems = []
    for event in upload.sqs_events:
        where = f"{UPLOAD_FUNCTION}.{event.name}"
        value = event.maximum_concurrency
        if value is None:
            problems.append(f"{where}: ScalingConfig.MaximumConcurrency is not set")
        elif isinstance(value, dict) and "Ref" in value:
            parameter = t.parameters.get(value["Ref"])
            bounds = {} if parameter is None else parameter.properties
            highest = max(int(bounds.get("MaxValue", 10**9)), int(bounds.get("Default", 0)))
            if highest > CHARTMOGUL_MAX_CONNECTIONS:
                problems.append(f"{where}: parameter {value['Ref']} allows {highest} > 20")
        elif int(value) > CHARTMOGUL_MAX_CONNECTIONS:
            problems.append(f"{where}: MaximumConcurrency {value} > 20")
    return problems


def no_write_action_on_any_resource(t: Template) -> list[str]:
    """No Allow statement anywhere grants a write (or wildcard) action on Resource "*"; functions attach no
    managed policies (their statements are not in the template to check) and scope SAM policy templates."""
    problems = [
        f"{where}: Allow {sorted(writes)} on '*'"
        for where, statement in _statements(t.resources, "Resources")
        if statement.get("Effect") == "Allow" and "*" in _as_list(statement.get("Resource"))
        for writes in [_write_actions(statement)]
        if writes
    ]
    for function in t.functions.values():
        for policy in _policy_branches(function.policies):
            if isinstance(policy, str):
                problems.append(f"{function.logical_id}: managed policy {policy} cannot be checked")
            elif isinstance(policy, dict):
                for name, arguments in policy.items():
                    if name in SCOPED_POLICY_TEMPLATES:
                        scope = (arguments or {}).get(SCOPED_POLICY_TEMPLATES[name])
                        if not isinstance(scope, dict):  # a literal name or "*", not a template resource
                            problems.append(f"{function.logical_id}: {name} scoped to {scope!r}")
                    elif name != "Statement":
                        problems.append(f"{function.logical_id}: unreviewed policy template {name}")
    return problems


def storage_encrypted(t: Template) -> list[str]:
    problems = [f"{q.logical_id}: queue not encrypted" for q in t.queues.values() if not q.encrypted]
    for table in t.other_resources(TABLE_TYPE).values():
        if not table.properties.get("SSESpecification", {}).get("SSEEnabled"):
            problems.append(f"{table.logical_id}: table without SSESpecification.SSEEnabled")
    for bucket in t.buckets.values():
        rules = bucket.properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
            problems.append(f"{bucket.logical_id}: bucket without BucketEncryption")
    return problems


def terminal_queues_alarmed(t: Template) -> list[str]:
    """Every dead-letter-class queue has an alarm that fires on its first visible message."""
    alarmed = set()
    for alarm in t.alarms.values():
        p = alarm.properties
        if (p.get("Namespace"), p.get("MetricName")) != ("AWS/SQS", "ApproximateNumberOfMessagesVisible"):
            continue
        if p.get("ComparisonOperator") != "GreaterThanThreshold" or float(p.get("Threshold", -1)) != 0:
            continue
        for dimension in p.get("Dimensions", []):
            value = dimension.get("Value")
            if dimension.get("Name") == "QueueName" and isinstance(value, dict) and "Fn::GetAtt" in value:
                alarmed.add(value["Fn::GetAtt"][0])
    return [f"{q}: dead-letter-class queue without a depth alarm" for q in _terminal_queues(t) if q not in alarmed]


def terminal_queues_keep_14_days(t: Template) -> list[str]:
    """A dead letter must outlive the time it takes someone to notice the alarm and replay it."""
    return [
        f"{q}: MessageRetentionPeriod {t.queues[q].retention_seconds} < 14 days"
        for q in _terminal_queues(t)
        if t.queues[q].retention_seconds < SQS_MAX_RETENTION_SECONDS
    ]


def terminal_queues_named_by_their_tag(t: Template) -> list[str]:
    """Every terminal queue carries the tag that names it as `cmsync dlq` does (dlq.py QUEUE_TAG, QUEUE_NAMES): a
    queue given by URL alone is known by it, so a failed audit is never listed or replayed as a failed export."""
    from chartmogul_sync.sinks.chartmogul.dlq import QUEUE_TAG, STACK_QUEUES

    name_of = {logical_id: name for name, logical_id in STACK_QUEUES.items()}
    problems = []
    for queue in _terminal_queues(t):
        tags = {tag.get("Key"): tag.get("Value") for tag in _as_list(t.queues[queue].properties.get("Tags", []))}
        if tags.get(QUEUE_TAG) != name_of.get(queue):
            problems.append(f"{queue}: tag {QUEUE_TAG} is {tags.get(QUEUE_TAG)!r}, not {name_of.get(queue)!r}")
    return problems


def async_triggers_have_dead_letters(t: Template) -> list[str]:
    """Scheduler-invoked (asynchronous) export: a DLQ for failing to invoke, a destination for failing runs;
    SQS consumers carry no function-level DLQ, which never applies to polled invocations (docs/sources.md#aws-scheduler,
    #aws-pitfalls)."""
    problems = []
    for function in t.functions.values():
        for event in function.schedule_events:
            raw = function.properties["Events"][event.name]["Properties"]
            for key in ("DeadLetterConfig", "RetryPolicy"):
                if key not in raw:
                    problems.append(f"{function.logical_id}.{event.name}: no {key}")
        if function.schedule_events:
            on_failure = function.properties.get("EventInvokeConfig", {}).get("DestinationConfig", {})
            if "OnFailure" not in on_failure and "DeadLetterQueue" not in function.properties:
                problems.append(f"{function.logical_id}: asynchronous but no on-failure destination")
        if function.sqs_events and "DeadLetterQueue" in function.properties:
            problems.append(f"{function.logical_id}: function DeadLetterQueue is ignored for SQS triggers")
    return problems


def no_secret_values(t: Template) -> list[str]:
    return [
        f"{s.logical_id}: SecretString in the template"
        for s in t.other_resources(SECRET_TYPE).values()
        if "SecretString" in s.properties
    ]


# `!GetAtt StateTable.Arn` as the loader gives it (the list form), and the dotted-string form JSON may use.
STATE_TABLE_ARN = ({"Fn::GetAtt": ["StateTable", "Arn"]}, {"Fn::GetAtt": "StateTable.Arn"})


def sqs_consumers_can_keep_failure_reasons(t: Template) -> list[str]:
    """Every SQS consumer may write the state table: a failed record's reason is kept there for its dead letter
    (chartmogul_sync/failures.py), or `cmsync dlq list` would show dead letters without a reason."""
    problems = []
    for function in t.functions.values():
        if not function.sqs_events:
            continue
        policies = t.raw["Resources"][function.logical_id]["Properties"].get("Policies", [])
        writes_table = any(
            isinstance(policy, dict)
            and any(
                name in policy and policy[name].get("TableName") == {"Ref": "StateTable"}
                for name in ("DynamoDBWritePolicy", "DynamoDBCrudPolicy")
            )
            for policy in policies
        ) or any(
            {"dynamodb:putitem", "dynamodb:*", "*"} & {str(a).lower() for a in _as_list(statement.get("Action"))}
            and any(resource in STATE_TABLE_ARN for resource in _as_list(statement.get("Resource")))
            for _, statement in _statements(policies, function.logical_id)
            if statement.get("Effect") == "Allow"
        )
        if not writes_table:
            problems.append(f"{function.logical_id}: cannot write the StateTable, where failure reasons are kept")
    return problems


AUDIT_FUNCTION = "AuditFunction"
AUDIT_DRIFT_METRIC = "AuditCustomersDiffering"  # functions/audit/app.py publishes it


def audit_scheduled_and_alarmed_on_drift(t: Template) -> list[str]:
    """The Audit function runs on a schedule set by a parameter, and an alarm watches the drift it publishes."""
    function = t.functions.get(AUDIT_FUNCTION)
    if function is None:
        return [f"{AUDIT_FUNCTION}: missing"]
    problems = []
    expressions = [
        function.properties["Events"][event.name]["Properties"].get("ScheduleExpression")
        for event in function.schedule_events
    ]
    if not any(isinstance(e, dict) and e.get("Ref") in t.parameters for e in expressions):
        problems.append(f"{AUDIT_FUNCTION}: no schedule whose expression is a parameter")
    alarms = [
        r
        for r in t.other_resources("AWS::CloudWatch::Alarm").values()
        if r.properties.get("MetricName") == AUDIT_DRIFT_METRIC and r.properties.get("Namespace") == "ChartMogulSync"
    ]
    if not alarms:
        problems.append(f"no alarm on {AUDIT_DRIFT_METRIC}")
    return problems


def audit_writes_only_its_reports(t: Template) -> list[str]:
    """The audit reads everything it compares; the one thing it writes is its report, under audit/."""
    function = t.functions.get(AUDIT_FUNCTION)
    if function is None:
        return []
    problems = []
    for policy in _policy_branches(function.policies):  # both branches of a conditional policy
        if isinstance(policy, dict):
            for name in policy:
                if name != "Statement" and not name.endswith(("ReadPolicy", "GetSecretValuePolicy")):
                    problems.append(f"{AUDIT_FUNCTION}: policy template {name} may write")
    for where, statement in _statements(function.properties.get("Policies", []), AUDIT_FUNCTION):
        for action in map(str.lower, _write_actions(statement)):
            if action in ("sqs:receivemessage", "sqs:changemessagevisibility"):
                continue  # a listing receives and at once releases: nothing is changed or removed
            if action in ("kms:decrypt", "kms:generatedatakey") and statement.get("Resource") == {"Ref": "KmsKeyArn"}:
                continue  # the customer-managed key the data it reads and its report are encrypted with
            resources = [str(r) for r in _as_list(statement.get("Resource"))]
            if action != "s3:putobject" or not all("/audit/*" in r for r in resources):
                problems.append(f"{where}: {action} on {resources}")
    return problems


# What listing a terminal queue needs (sinks/chartmogul/dlq.py list_messages, resolve_terminal_queue), and what
# finding a DLQ through its work queue's RedrivePolicy needs (dead_letter_queue_of).
LIST_QUEUE_ACTIONS = {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
FIND_DLQ_ACTIONS = {"sqs:GetQueueAttributes"}


def audit_reads_every_queue_a_record_waits_in(t: Template) -> list[str]:
    """The deployed audit reads every terminal queue `cmsync audit --stack` reads (dlq.py RECORD_QUEUES): the
    environment variable that names the queue (or the work queue its DLQ is found through) and the permissions
    to list it. A queue it cannot read turns the customers waiting there into "not uploaded"."""
    from chartmogul_sync.config import Settings
    from chartmogul_sync.sinks.chartmogul.dlq import DLQ_SOURCES, RECORD_QUEUES, STACK_QUEUES, configured_queue_urls

    function = t.functions.get(AUDIT_FUNCTION)
    if function is None:
        return []
    variables = function.properties.get("Environment", {}).get("Variables", {})
    allowed: dict[str, list[Any]] = {}  # action → resources an Allow statement grants it on
    for _, statement in _statements(function.policies, AUDIT_FUNCTION):
        if statement.get("Effect") == "Allow":
            for action in map(str, _as_list(statement.get("Action"))):
                allowed.setdefault(action, []).extend(_as_list(statement.get("Resource")))
    named_by = {name: variable for name, (variable, _) in configured_queue_urls(Settings()).items()}
    problems = []
    for name in RECORD_QUEUES:
        queue = STACK_QUEUES[name]
        if queue not in t.queues:
            continue
        source = DLQ_SOURCES.get(name)
        named = STACK_QUEUES[source] if source else queue  # the queue whose URL the environment must give
        variable = named_by[source or name]
        if not _mentions_resource(variables.get(variable), "Ref", named):
            problems.append(f"{AUDIT_FUNCTION}: {variable} does not name {named} (the audit cannot read {name})")
        # A DLQ is found by its name in the work queue's RedrivePolicy: GetQueueUrl on it too.
        needs = [(queue, LIST_QUEUE_ACTIONS | {"sqs:GetQueueUrl"})] if source else [(queue, LIST_QUEUE_ACTIONS)]
        needs += [(named, FIND_DLQ_ACTIONS)] if source else []
        for resource, actions in needs:
            for action in sorted(actions):
                if not any(_mentions_resource(r, "Fn::GetAtt", resource) for r in allowed.get(action, [])):
                    problems.append(f"{AUDIT_FUNCTION}: no {action} on {resource} (the audit cannot read {name})")
    return problems


def _mentions_resource(node: Any, intrinsic: str, logical_id: str) -> bool:
    """`node` is (or holds, e.g. in a branch of an Fn::If) a Ref / GetAtt of the resource."""
    if isinstance(node, dict):
        if intrinsic in node:
            target = node[intrinsic]
            return (target[0] if isinstance(target, list) else str(target).split(".")[0]) == logical_id
        return any(_mentions_resource(v, intrinsic, logical_id) for v in node.values())
    if isinstance(node, list):
        return any(_mentions_resource(item, intrinsic, logical_id) for item in node)
    return False


# ------------------------------------------------------------------------------------------------ operations
# An operator's view (docs/operations.md): every function logs to a log group that expires, and alarms on errors
# and throttles; every work queue alarms when its oldest message waits too long; a heartbeat and the refused-key
# alarms exist; every alarm notifies the stack's topics. Generic over functions and queues, so a new one is covered.
LOG_RETENTION_PARAMETER = "LogRetentionInDays"
ALARM_ACTIONS = [
    {"Fn::If": ["HasAlarmEmail", {"Ref": "AlarmTopic"}, {"Ref": "AWS::NoValue"}]},
    {"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AWS::NoValue"}]},
]
RETAINING_POLICIES = {"Retain", "RetainExceptOnCreate", "Snapshot"}
# Resources that must not use KmsKeyArn, each with why (its checkov skip in the template says the same).
NOT_UNDER_CUSTOMER_KEY = {"ScheduleDeadLetterQueue": "SAM's Scheduler role could not use the key"}


def functions_log_to_expiring_log_groups(t: Template) -> list[str]:
    """Each function's LoggingConfig names a log group of the template, kept LogRetentionInDays days."""
    groups = t.of_type("AWS::Logs::LogGroup")
    problems = [
        f"{name}: log group without RetentionInDays: !Ref {LOG_RETENTION_PARAMETER}"
        for name, group in groups.items()
        if group.get("Properties", {}).get("RetentionInDays") != {"Ref": LOG_RETENTION_PARAMETER}
    ]
    for function in t.functions.values():
        target = function.properties.get("LoggingConfig", {}).get("LogGroup")
        if not (isinstance(target, dict) and target.get("Ref") in groups):
            problems.append(f"{function.logical_id}: LoggingConfig.LogGroup is not a log group of the template")
    return problems


def functions_alarm_on_errors_and_throttles(t: Template) -> list[str]:
    return [
        f"{function}: no alarm on AWS/Lambda {metric} > 0"
        for function in t.functions
        for metric in ("Errors", "Throttles")
        if not _alarms_on("AWS/Lambda", metric, "FunctionName", {"Ref": function}, t)
    ]


def work_queues_alarm_on_oldest_message_age(t: Template) -> list[str]:
    return [
        f"{queue}: work queue without an ApproximateAgeOfOldestMessage alarm"
        for queue in t.queues
        if t.consumers_of(queue)
        and not _alarms_on("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", _queue_name(queue), t)
    ]


def heartbeat_and_refused_key_alarms(t: Template) -> list[str]:
    """No successful incremental run in N hours (missing data = breaching), and 401/403s from either API."""
    problems = []
    heartbeat = _alarms_on("ChartMogulSync", "IncrementalRunsSucceeded", "service", "export", t)
    if not any(a.properties.get("TreatMissingData") == "breaching" for a in heartbeat):
        problems.append("no heartbeat alarm on IncrementalRunsSucceeded that treats missing data as breaching")
    for metric, service in (("ChartMogulAuthFailures", "upload"), ("StripeAuthFailures", "export")):
        if not _alarms_on("ChartMogulSync", metric, "service", service, t):
            problems.append(f"no alarm on {metric} (service {service})")
    return problems


def every_alarm_notifies(t: Template) -> list[str]:
    return [
        f"{alarm.logical_id}: AlarmActions do not name the stack's alarm topics"
        for alarm in t.alarms.values()
        if alarm.properties.get("AlarmActions") != ALARM_ACTIONS
    ]


def stateful_resources_survive_deletion_and_replacement(t: Template) -> list[str]:
    raw = t.raw["Resources"]
    return [
        f"{logical_id}: {attribute} {raw[logical_id].get(attribute)!r} would delete its data"
        for logical_id in [*t.tables, *t.buckets, *t.secrets]
        for attribute in ("DeletionPolicy", "UpdateReplacePolicy")
        if raw[logical_id].get(attribute) not in RETAINING_POLICIES
    ]


def queues_refuse_plain_http(t: Template) -> list[str]:
    protected = set()
    for policy in t.of_type("AWS::SQS::QueuePolicy").values():
        properties = policy.get("Properties", {})
        statements = _as_list(properties.get("PolicyDocument", {}).get("Statement"))
        if any(
            s.get("Effect") == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": False}}
            for s in statements
        ):
            protected.update(logical_id_of_ref(queue) for queue in _as_list(properties.get("Queues")))
    return [f"{queue}: no queue policy denying requests without TLS" for queue in t.queues if queue not in protected]


def customer_managed_key_reaches_stored_data(t: Template) -> list[str]:
    """With KmsKeyArn set, every queue, table, bucket and secret uses it, and every function may use it."""
    stored = [*t.queues, *t.tables, *t.buckets, *t.secrets]
    problems = [
        f"{logical_id}: does not use KmsKeyArn"
        for logical_id in stored
        if logical_id not in NOT_UNDER_CUSTOMER_KEY and not _mentions(t.raw["Resources"][logical_id], "KmsKeyArn")
    ]
    problems += [
        f"{function.logical_id}: no kms permission on KmsKeyArn"
        for function in t.functions.values()
        if not _mentions(function.policies, "KmsKeyArn")
    ]
    return problems


def scheduled_export_runs_alone(t: Template) -> list[str]:
    """Two exports at once would move the same cursor or checkpoint: a scheduled function runs one at a time."""
    return [
        f"{function.logical_id}: scheduled but ReservedConcurrentExecutions is not 1"
        for function in t.functions.values()
        if function.schedule_events and function.properties.get("ReservedConcurrentExecutions") != 1
    ]


def sqs_triggered_functions_are_never_throttled(t: Template) -> list[str]:
    """A function an SQS trigger invokes has no reserved concurrency below the trigger's MaximumConcurrency (nor a
    trigger without one): a throttled batch goes back to the queue and counts a receive towards maxReceiveCount, so
    healthy records would end in the DLQ (docs/sources.md#aws-sqs-lambda: event source mappings do not account for
    reserved concurrency; https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html)."""
    problems = []
    for function in t.functions.values():
        reserved = function.properties.get("ReservedConcurrentExecutions")
        if reserved is None:
            continue
        for event in function.sqs_events:
            where = f"{function.logical_id}.{event.name}"
            highest = _highest_value(t, event.maximum_concurrency)
            if highest is None:
                problems.append(f"{where}: ReservedConcurrentExecutions {reserved} and no MaximumConcurrency")
            elif int(reserved) < highest:
                problems.append(f"{where}: ReservedConcurrentExecutions {reserved} < MaximumConcurrency {highest}")
    return problems


def _highest_value(t: Template, value: Any) -> int | None:
    """A literal, or the highest value a `Ref` to a parameter may take (its MaxValue, else its Default)."""
    if isinstance(value, dict) and "Ref" in value:
        bounds = t.parameters[value["Ref"]].properties
        return int(bounds.get("MaxValue", bounds.get("Default", 0)))
    return None if value is None else int(value)


RULES: list[Rule] = [
    partial_batch_response,
    work_queues_have_dlq,
    visibility_covers_consumer_timeout,
    upload_concurrency_within_chartmogul_limit,
    no_write_action_on_any_resource,
    storage_encrypted,
    terminal_queues_alarmed,
    terminal_queues_keep_14_days,
    terminal_queues_named_by_their_tag,
    async_triggers_have_dead_letters,
    no_secret_values,
    sqs_consumers_can_keep_failure_reasons,
    audit_scheduled_and_alarmed_on_drift,
    audit_writes_only_its_reports,
    audit_reads_every_queue_a_record_waits_in,
    functions_log_to_expiring_log_groups,
    functions_alarm_on_errors_and_throttles,
    work_queues_alarm_on_oldest_message_age,
    heartbeat_and_refused_key_alarms,
    every_alarm_notifies,
    stateful_resources_survive_deletion_and_replacement,
    queues_refuse_plain_http,
    customer_managed_key_reaches_stored_data,
    scheduled_export_runs_alone,
    sqs_triggered_functions_are_never_throttled,
]


# ------------------------------------------------------------------------------------------------ helpers
def _terminal_queues(t: Template) -> list[str]:
    return [q for q in t.queues if not t.consumers_of(q)]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policy_branches(policies: list[Any]) -> Iterator[Any]:
    """Each policy, with both branches of an `Fn::If` (an `AWS::NoValue` branch adds nothing)."""
    for policy in policies:
        if isinstance(policy, dict) and list(policy) == ["Fn::If"]:
            _, when_true, when_false = policy["Fn::If"]
            yield from _policy_branches([b for b in (when_true, when_false) if b != {"Ref": "AWS::NoValue"}])
        else:
            yield policy


def _queue_name(queue: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [queue, "QueueName"]}


def logical_id_of_ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def _alarms_on(namespace: str, metric: str, dimension: str, value: Any, t: Template) -> list[Any]:
    """Alarms on `namespace/metric` for one dimension value, that notify (the rule every_alarm_notifies checks
    what they notify)."""
    return [
        alarm
        for alarm in t.alarms.values()
        if (alarm.properties.get("Namespace"), alarm.properties.get("MetricName")) == (namespace, metric)
        and {"Name": dimension, "Value": value} in alarm.properties.get("Dimensions", [])
    ]


def _mentions(node: Any, parameter: str) -> bool:
    if isinstance(node, dict):
        return node == {"Ref": parameter} or any(_mentions(v, parameter) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(item, parameter) for item in node)
    return False


def _statements(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement anywhere under `node` (function policies, roles, bucket and queue policies)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Statement":
                for statement in _as_list(value):
                    if isinstance(statement, dict):
                        yield where, statement
            else:
                yield from _statements(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _statements(item, f"{where}[{index}]")


def _write_actions(statement: dict[str, Any]) -> set[str]:
    if "NotAction" in statement:
        return {"NotAction: " + ",".join(map(str, _as_list(statement["NotAction"])))}
    writes = set()
    for action in map(str, _as_list(statement.get("Action"))):
        verb = action.split(":", 1)[-1]
        if action == "*" or not verb.startswith(READ_ONLY_VERB_PREFIXES):
            writes.add(action)
    return writes


# ------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(DEFAULT_TEMPLATE)


def mutated(template: Template, mutate: Callable[[dict[str, Any]], None]) -> Template:
    raw = copy.deepcopy(template.raw)
    mutate(raw)
    return Template(raw, template.base_dir)


def test_cfn_lint_finds_nothing() -> None:
    assert lint(DEFAULT_TEMPLATE.read_text()) == []


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_template_satisfies(rule: Rule, template: Template) -> None:
    assert rule(template) == []


def test_every_queue_is_either_polled_with_a_dlq_or_terminal_with_an_alarm(template: Template) -> None:
    polled = {q for q in template.queues if template.consumers_of(q)}
    assert polled == {"RawQueue", "UploadQueue", "StripeEventsQueue"}
    assert set(_terminal_queues(template)) == {
        "RawDeadLetterQueue",
        "UploadDeadLetterQueue",
        "BadRecordsQueue",
        "ScheduleDeadLetterQueue",
        "ExportFailedQueue",
        "AuditFailedQueue",
        "StripeEventsDeadLetterQueue",
    }


# ------------------------------------------------------------------------ the Stripe events block (near-real-time)
STRIPE_EVENT_RESOURCES = {
    "StripeEventBus",
    "StripeEventsRule",
    "StripeEventsQueue",
    "StripeEventsDeadLetterQueue",
    "StripeEventsQueuePolicy",
    "StripeEventsTrigger",
    "StripeEventsFunction",
    "StripeEventsLogGroup",
    "StripeEventsFunctionErrorsAlarm",
    "StripeEventsFunctionThrottlesAlarm",
    "StripeEventsQueueOldestMessageAlarm",
    "StripeEventsDeadLetterQueueAlarm",
}


def test_the_stripe_events_path_is_deployed_only_with_a_partner_event_source(template: Template) -> None:
    # Every parameter at its default (a condition may name any of them), but for the event source.
    without = template.with_conditions(parameter_values(template, {"StripePartnerEventSourceName": ""}))
    assert STRIPE_EVENT_RESOURCES.isdisjoint(without.resources)
    assert [s.queue for s in without.functions["ExportFunction"].sqs_events] == []
    source = "aws.partner/stripe.com/ed_test_61abc"
    deployed = template.with_conditions(parameter_values(template, {"StripePartnerEventSourceName": source}))
    assert set(deployed.resources) >= STRIPE_EVENT_RESOURCES
    # The export function (one run at a time) is never the trigger's target: its batches would be throttled.
    assert deployed.functions["ExportFunction"].sqs_events == ()
    (trigger,) = deployed.functions["StripeEventsFunction"].sqs_events
    assert (trigger.queue, trigger.batch_size, trigger.reports_batch_item_failures) == ("StripeEventsQueue", 100, True)
    assert trigger.batching_window_seconds > 0  # a window to coalesce a change's many events


def test_the_stripe_events_rule_routes_exactly_the_types_the_export_reads_to_the_polled_queue(
    template: Template,
) -> None:
    from chartmogul_sync.sources.stripe.realtime import REALTIME_EVENT_TYPES

    rule = template.event_rules["StripeEventsRule"].properties
    assert rule["EventBusName"] == {"Ref": "StripeEventBus"}
    assert rule["EventPattern"]["detail-type"] == list(REALTIME_EVENT_TYPES)
    assert rule["EventPattern"]["source"] == [{"prefix": "aws.partner/stripe.com/"}]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["StripeEventsQueue", "Arn"]}
    # What EventBridge cannot deliver waits where the export's own failures wait: one alarmed DLQ.
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["StripeEventsDeadLetterQueue", "Arn"]}
    redrive = template.queues["StripeEventsQueue"].redrive
    assert redrive is not None and redrive.dead_letter_queue == "StripeEventsDeadLetterQueue"
    bus = template.event_buses["StripeEventBus"].properties
    assert bus["Name"] == bus["EventSourceName"] == {"Ref": "StripePartnerEventSourceName"}


def test_only_the_stripe_events_rule_may_send_to_its_queues(template: Template) -> None:
    policy = template.resources["StripeEventsQueuePolicy"]["Properties"]["PolicyDocument"]
    # One Allow; the other statement is the TLS-only Deny every queue policy holds (queues_refuse_plain_http).
    (statement,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert [s["Sid"] for s in policy["Statement"] if s["Effect"] != "Allow"] == ["EnforceTLS"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["StripeEventsRule", "Arn"]}}}


def test_the_functions_that_read_stripe_split_the_stripe_budget_the_user_gave(template: Template) -> None:
    """Three functions read Stripe at once (a batch of events and the daily audit beside a backfill): every
    invocation of all three at their most adds up to STRIPE_RATE_LIMIT_SHARE of Stripe's limit, never more, with
    the near-real-time path or without."""
    from chartmogul_sync.config import Settings

    source = {"StripePartnerEventSourceName": "aws.partner/stripe.com/ed_test_61abc"}
    deployed = template.with_conditions(parameter_values(template, source))
    export = deployed.functions["ExportFunction"]
    realtime = deployed.functions["StripeEventsFunction"]
    audit = deployed.functions["AuditFunction"]
    (trigger,) = realtime.sqs_events
    realtime_env = realtime.properties["Environment"]["Variables"]
    export_env = export.properties["Environment"]["Variables"]
    audit_env = audit.properties["Environment"]["Variables"]
    assert int(realtime_env["STRIPE_EVENTS_MAX_CONCURRENCY"]) == trigger.maximum_concurrency
    export_share = export_env["STRIPE_REALTIME_SHARE"]
    assert export_share == {"Fn::If": ["HasStripeEventSource", realtime_env["STRIPE_REALTIME_SHARE"], "0"]}
    # The export function gives the audit the part the Audit function takes.
    assert export_env["STRIPE_AUDIT_SHARE"] == audit_env["STRIPE_AUDIT_SHARE"]
    assert float(audit_env["STRIPE_AUDIT_SHARE"]) > 0
    assert audit.properties["ReservedConcurrentExecutions"] == 1  # one audit at a time

    key, share = "rk_live_x", 0.5
    audit_share = float(audit_env["STRIPE_AUDIT_SHARE"])
    exports_at_once = export.properties["ReservedConcurrentExecutions"]
    for realtime_share in (float(realtime_env["STRIPE_REALTIME_SHARE"]), 0.0):  # with the path, without
        as_export = Settings(
            stripe_rate_limit_share=share, stripe_realtime_share=realtime_share, stripe_audit_share=audit_share
        )
        total = exports_at_once * as_export.stripe_requests_per_second(key)
        total += as_export.stripe_requests_per_second(key, audit=True)
        if realtime_share:
            as_realtime = as_export.model_copy(update={"stripe_events_max_concurrency": trigger.maximum_concurrency})
            total += trigger.maximum_concurrency * as_realtime.stripe_requests_per_second(key, realtime=True)
        assert total == pytest.approx(100 * share), realtime_share
    # A process that is none of them (a local export) takes the whole share.
    assert Settings(stripe_rate_limit_share=share).stripe_requests_per_second(key) == pytest.approx(100 * share)


def test_the_stripe_events_function_may_touch_only_the_state_items_a_batch_uses(template: Template) -> None:
    """Least privilege that also keeps a batch from ever moving the export's cursor or a backfill checkpoint."""
    from chartmogul_sync.failures import FailureLedger
    from chartmogul_sync.sources.stripe.exported import EXPORTED_PK
    from chartmogul_sync.sources.stripe.run import RUN_RECORD_PK

    policies = template.functions["StripeEventsFunction"].policies
    on_table = [
        statement
        for _, statement in _statements(policies, "StripeEventsFunction")
        if any(resource in STATE_TABLE_ARN for resource in _as_list(statement.get("Resource")))
    ]
    (statement,) = on_table
    assert sorted(statement["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    # The failure reasons of its dead letters (failures.py: pk failure#<message id>) are the one wildcard.
    failure_pk = FailureLedger.partition_key("*")
    assert sorted(leading) == sorted([EXPORTED_PK, RUN_RECORD_PK, failure_pk])
    assert not any(wildcard in pk for pk in (EXPORTED_PK, RUN_RECORD_PK) for wildcard in "*?")
    assert not any(name.startswith("DynamoDB") for policy in policies if isinstance(policy, dict) for name in policy)


def _r(raw: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = raw["Resources"][logical_id]["Properties"]
    return properties


def _event(raw: dict[str, Any], function: str, event: str) -> dict[str, Any]:
    properties: dict[str, Any] = _r(raw, function)["Events"][event]["Properties"]
    return properties


def _add_statement(function: str, statement: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda raw: _r(raw, function)["Policies"].append({"Statement": [statement]})


def _statement_of(raw: dict[str, Any], function: str, sid: str) -> dict[str, Any]:
    """The inline policy statement `sid` of the function (to mutate it)."""
    (statement,) = [s for _, s in _statements(_r(raw, function)["Policies"], function) if s.get("Sid") == sid]
    return statement


def _without_statement(function: str, sid: str) -> Callable[[dict[str, Any]], None]:
    """Remove the statement `sid` from the function's inline policies (and a policy it leaves empty)."""

    def mutate(raw: dict[str, Any]) -> None:
        policies = _r(raw, function)["Policies"]
        found = False
        for policy in policies:
            if isinstance(policy, dict) and "Statement" in policy:
                kept = [s for s in _as_list(policy["Statement"]) if s.get("Sid") != sid]
                found = found or len(kept) < len(_as_list(policy["Statement"]))
                policy["Statement"] = kept
        assert found, f"{function} has no statement {sid}"
        policies[:] = [p for p in policies if not (isinstance(p, dict) and p.get("Statement") == [])]

    return mutate


# (rule, what the mutation breaks, the mutation, a word the violation must name)
MUTATIONS: list[tuple[Rule, str, Callable[[dict[str, Any]], None], str]] = [
    (
        terminal_queues_named_by_their_tag,
        "audit-failed queue tagged as the export's",
        lambda raw: _r(raw, "AuditFailedQueue")["Tags"][0].update(Value="export-failed"),
        "AuditFailedQueue: tag chartmogul-sync:queue is 'export-failed', not 'audit-failed'",
    ),
    (
        terminal_queues_named_by_their_tag,
        "a terminal queue without the tag",
        lambda raw: _r(raw, "ScheduleDeadLetterQueue").pop("Tags"),
        "ScheduleDeadLetterQueue: tag chartmogul-sync:queue is None",
    ),
    (
        partial_batch_response,
        "Stripe events trigger (a plain event source mapping) without ReportBatchItemFailures",
        lambda raw: _r(raw, "StripeEventsTrigger").pop("FunctionResponseTypes"),
        "StripeEventsFunction.StripeEventsTrigger",
    ),
    (
        partial_batch_response,
        "transform trigger without ReportBatchItemFailures",
        lambda raw: _event(raw, "TransformFunction", "RawSnapshots").pop("FunctionResponseTypes"),
        "TransformFunction.RawSnapshots",
    ),
    (
        work_queues_have_dlq,
        "raw queue without RedrivePolicy",
        lambda raw: _r(raw, "RawQueue").pop("RedrivePolicy"),
        "RawQueue",
    ),
    (
        work_queues_have_dlq,
        "upload queue with maxReceiveCount 4",
        lambda raw: _r(raw, "UploadQueue")["RedrivePolicy"].update(maxReceiveCount=4),
        "UploadQueue",
    ),
    (
        visibility_covers_consumer_timeout,
        "raw queue visibility one second short of 6x",
        lambda raw: _r(raw, "RawQueue").update(VisibilityTimeout=6 * 60 - 1),
        "RawQueue",
    ),
    (
        visibility_covers_consumer_timeout,
        "upload queue visibility one second short of 6x",
        lambda raw: _r(raw, "UploadQueue").update(VisibilityTimeout=6 * 900 - 1),
        "UploadQueue",
    ),
    (
        upload_concurrency_within_chartmogul_limit,
        "concurrency parameter allowing 21",
        lambda raw: raw["Parameters"]["UploadMaximumConcurrency"].update(MaxValue=21),
        "UploadMaximumConcurrency",
    ),
    (
        upload_concurrency_within_chartmogul_limit,
        "literal concurrency 25",
        lambda raw: _event(raw, "UploadFunction", "CustomerBundles")["ScalingConfig"].update(MaximumConcurrency=25),
        "25",
    ),
    (
        upload_concurrency_within_chartmogul_limit,
        "no ScalingConfig on upload",
        lambda raw: _event(raw, "UploadFunction", "CustomerBundles").pop("ScalingConfig"),
        "not set",
    ),
    (
        no_write_action_on_any_resource,
        "sqs:SendMessage on *",
        _add_statement("TransformFunction", {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}),
        "TransformFunction",
    ),
    (
        no_write_action_on_any_resource,
        "wildcard action on * in a bucket policy",
        lambda raw: _r(raw, "StagingBucketPolicy")["PolicyDocument"]["Statement"].append(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": ["*"]}
        ),
        "StagingBucketPolicy",
    ),
    (
        no_write_action_on_any_resource,
        "a managed policy",
        lambda raw: _r(raw, "UploadFunction")["Policies"].append("AmazonSQSFullAccess"),
        "AmazonSQSFullAccess",
    ),
    (
        no_write_action_on_any_resource,
        "a policy template scoped to every queue",
        lambda raw: _r(raw, "ExportFunction")["Policies"].append({"SQSSendMessagePolicy": {"QueueName": "*"}}),
        "SQSSendMessagePolicy",
    ),
    (
        storage_encrypted,
        "bad-records queue without SSE",
        lambda raw: [_r(raw, "BadRecordsQueue").pop(key) for key in ("SqsManagedSseEnabled", "KmsMasterKeyId")],
        "BadRecordsQueue",
    ),
    (
        storage_encrypted,
        "table with SSE off",
        lambda raw: _r(raw, "StateTable")["SSESpecification"].update(SSEEnabled=False),
        "StateTable",
    ),
    (
        storage_encrypted,
        "bucket without encryption",
        lambda raw: _r(raw, "StagingBucket").pop("BucketEncryption"),
        "StagingBucket",
    ),
    (
        terminal_queues_alarmed,
        "bad-records alarm removed",
        lambda raw: raw["Resources"].pop("BadRecordsQueueAlarm"),
        "BadRecordsQueue",
    ),
    (
        terminal_queues_alarmed,
        "raw DLQ alarm pointed at the upload DLQ",
        lambda raw: _r(raw, "RawDeadLetterQueueAlarm")["Dimensions"][0].update(
            Value={"Fn::GetAtt": ["UploadDeadLetterQueue", "QueueName"]}
        ),
        "RawDeadLetterQueue",
    ),
    (
        terminal_queues_alarmed,
        "a new queue nothing polls and nothing watches",
        lambda raw: raw["Resources"].update(
            OrphanQueue={"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}}
        ),
        "OrphanQueue",
    ),
    (
        terminal_queues_keep_14_days,
        "scheduler DLQ keeping 4 days",
        lambda raw: _r(raw, "ScheduleDeadLetterQueue").update(MessageRetentionPeriod=345600),
        "ScheduleDeadLetterQueue",
    ),
    (
        async_triggers_have_dead_letters,
        "schedule without DeadLetterConfig",
        lambda raw: _event(raw, "ExportFunction", "IncrementalSchedule").pop("DeadLetterConfig"),
        "DeadLetterConfig",
    ),
    (
        async_triggers_have_dead_letters,
        "export without on-failure destination",
        lambda raw: _r(raw, "ExportFunction").pop("EventInvokeConfig"),
        "on-failure",
    ),
    (
        async_triggers_have_dead_letters,
        "function DLQ on an SQS consumer",
        lambda raw: _r(raw, "TransformFunction").update(
            DeadLetterQueue={"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["RawDeadLetterQueue", "Arn"]}}
        ),
        "TransformFunction",
    ),
    (
        sqs_consumers_can_keep_failure_reasons,
        "transform without write access to the state table",
        _without_statement("TransformFunction", "FailureReasons"),
        "TransformFunction",
    ),
    (
        no_secret_values,
        "a secret value in the template",
        lambda raw: _r(raw, "StripeApiKeySecret").update(SecretString="sk_live_123"),
        "StripeApiKeySecret",
    ),
    (
        audit_scheduled_and_alarmed_on_drift,
        "drift alarm removed",
        lambda raw: raw["Resources"].pop("AuditDriftAlarm"),
        AUDIT_DRIFT_METRIC,
    ),
    (
        audit_scheduled_and_alarmed_on_drift,
        "audit schedule hard-coded",
        lambda raw: _event(raw, AUDIT_FUNCTION, "DailyAudit").update(ScheduleExpression="rate(1 day)"),
        "parameter",
    ),
    (
        audit_reads_every_queue_a_record_waits_in,
        "audit without the export-failed queue's URL, as before this fix",
        lambda raw: _r(raw, AUDIT_FUNCTION)["Environment"]["Variables"].pop("EXPORT_FAILED_QUEUE_URL"),
        "EXPORT_FAILED_QUEUE_URL does not name ExportFailedQueue",
    ),
    (
        audit_reads_every_queue_a_record_waits_in,
        "audit not allowed to receive from the Stripe events DLQ",
        lambda raw: _statement_of(raw, AUDIT_FUNCTION, "ListWaitingRecords")["Resource"].pop(),
        "no sqs:ReceiveMessage on StripeEventsDeadLetterQueue",
    ),
    (
        audit_reads_every_queue_a_record_waits_in,
        "audit unable to find the Stripe events DLQ through its queue's RedrivePolicy",
        lambda raw: _statement_of(raw, AUDIT_FUNCTION, "FindTheDeadLetterQueues")["Resource"].pop(),
        "no sqs:GetQueueAttributes on StripeEventsQueue",
    ),
    (
        audit_writes_only_its_reports,
        "audit may write the state table",
        lambda raw: _r(raw, AUDIT_FUNCTION)["Policies"].append(
            {"DynamoDBCrudPolicy": {"TableName": {"Ref": "StateTable"}}}
        ),
        "DynamoDBCrudPolicy",
    ),
    (
        audit_writes_only_its_reports,
        "audit may write anywhere in the bucket",
        _add_statement(
            AUDIT_FUNCTION,
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": {"Fn::Sub": "${StagingBucket.Arn}/*"}},
        ),
        "s3:putobject",
    ),
    (
        audit_writes_only_its_reports,
        "audit may delete waiting records",
        _add_statement(
            AUDIT_FUNCTION,
            {"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": {"Fn::GetAtt": ["BadRecordsQueue", "Arn"]}},
        ),
        "sqs:deletemessage",
    ),
    (
        audit_writes_only_its_reports,
        "audit may use any KMS key",
        _add_statement(
            AUDIT_FUNCTION, {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"}
        ),
        "kms:generatedatakey",
    ),
    (
        no_write_action_on_any_resource,
        "a write on * hidden in an Fn::If branch",
        lambda raw: _r(raw, "UploadFunction")["Policies"].append(
            {"Fn::If": ["HasKmsKey", {"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}, None]}
        ),
        "kms:*",
    ),
    (
        functions_log_to_expiring_log_groups,
        "a new function without a log group",
        lambda raw: raw["Resources"].update(NewFunction=_new_function()),
        "NewFunction",
    ),
    (
        functions_log_to_expiring_log_groups,
        "a log group kept forever",
        lambda raw: _r(raw, "UploadLogGroup").pop("RetentionInDays"),
        "UploadLogGroup",
    ),
    (
        functions_alarm_on_errors_and_throttles,
        "a new function without alarms",
        lambda raw: raw["Resources"].update(NewFunction=_new_function()),
        "NewFunction",
    ),
    (
        functions_alarm_on_errors_and_throttles,
        "transform throttle alarm removed",
        lambda raw: raw["Resources"].pop("TransformFunctionThrottlesAlarm"),
        "TransformFunction: no alarm on AWS/Lambda Throttles",
    ),
    (
        work_queues_alarm_on_oldest_message_age,
        "a new polled queue without an age alarm",
        lambda raw: raw["Resources"].update(
            EventsQueue={"Type": "AWS::SQS::Queue", "Properties": {}},
            NewFunction=_new_function({"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["EventsQueue", "Arn"]}}}),
        ),
        "EventsQueue",
    ),
    (
        work_queues_alarm_on_oldest_message_age,
        "upload queue age alarm pointed at the raw queue",
        lambda raw: _r(raw, "UploadQueueOldestMessageAlarm")["Dimensions"][0].update(Value=_queue_name("RawQueue")),
        "UploadQueue",
    ),
    (
        heartbeat_and_refused_key_alarms,
        "heartbeat that stays quiet when nothing reports",
        lambda raw: _r(raw, "IncrementalHeartbeatAlarm").update(TreatMissingData="notBreaching"),
        "heartbeat",
    ),
    (
        heartbeat_and_refused_key_alarms,
        "no alarm on ChartMogul refusing the key",
        lambda raw: raw["Resources"].pop("ChartMogulAuthFailuresAlarm"),
        "ChartMogulAuthFailures",
    ),
    (
        every_alarm_notifies,
        "an alarm that notifies nobody",
        lambda raw: _r(raw, "RawQueueOldestMessageAlarm").pop("AlarmActions"),
        "RawQueueOldestMessageAlarm",
    ),
    (
        stateful_resources_survive_deletion_and_replacement,
        "state table deleted with the stack",
        lambda raw: raw["Resources"]["StateTable"].update(DeletionPolicy="Delete"),
        "StateTable",
    ),
    (
        stateful_resources_survive_deletion_and_replacement,
        "secret without UpdateReplacePolicy",
        lambda raw: raw["Resources"]["ChartMogulApiKeySecret"].pop("UpdateReplacePolicy"),
        "ChartMogulApiKeySecret",
    ),
    (
        queues_refuse_plain_http,
        "bad-records queue policy removed",
        lambda raw: raw["Resources"].pop("BadRecordsQueuePolicy"),
        "BadRecordsQueue",
    ),
    (
        customer_managed_key_reaches_stored_data,
        "raw queue that ignores KmsKeyArn",
        lambda raw: _r(raw, "RawQueue").pop("KmsMasterKeyId"),
        "RawQueue",
    ),
    (
        customer_managed_key_reaches_stored_data,
        "transform without kms permission",
        lambda raw: _r(raw, "TransformFunction")["Policies"].pop(),
        "TransformFunction",
    ),
    (
        scheduled_export_runs_alone,
        "export allowed to overlap itself",
        lambda raw: _r(raw, "ExportFunction").pop("ReservedConcurrentExecutions"),
        "ExportFunction",
    ),
    (
        sqs_triggered_functions_are_never_throttled,
        "Stripe events trigger pointed at the export function (reserved concurrency 1), as before this fix",
        lambda raw: _r(raw, "StripeEventsTrigger").update(FunctionName={"Ref": "ExportFunction"}),
        "ExportFunction.StripeEventsTrigger: ReservedConcurrentExecutions 1 < MaximumConcurrency 2",
    ),
    (
        sqs_triggered_functions_are_never_throttled,
        "upload function given a reserved concurrency below its parameter's MaxValue",
        lambda raw: _r(raw, "UploadFunction").update(ReservedConcurrentExecutions=5),
        "UploadFunction.CustomerBundles: ReservedConcurrentExecutions 5 < MaximumConcurrency 20",
    ),
]


def _new_function(*events: dict[str, Any]) -> dict[str, Any]:
    """A function another change might add, with nothing operational around it."""
    properties: dict[str, Any] = {"CodeUri": "functions/audit/", "Handler": "app.lambda_handler", "Timeout": 60}
    if events:
        properties["Events"] = {f"Event{i}": event for i, event in enumerate(events)}
    return {"Type": "AWS::Serverless::Function", "Properties": properties}


@pytest.mark.parametrize(("rule", "broken", "mutate", "named"), MUTATIONS, ids=[m[1] for m in MUTATIONS])
def test_rule_fails_on_broken_copy(
    rule: Rule, broken: str, mutate: Callable[[dict[str, Any]], None], named: str, template: Template
) -> None:
    violations = rule(mutated(template, mutate))
    assert violations, f"{rule.__name__} did not notice: {broken}"
    assert any(named in v for v in violations), violations


def test_every_rule_is_proven_able_to_fail() -> None:
    assert {m[0] for m in MUTATIONS} == set(RULES)


def test_read_only_action_on_any_resource_is_allowed(template: Template) -> None:
    # The IAM rule is about writes: a read-only action on "*" (which some APIs require) passes.
    read_only = {"Effect": "Allow", "Action": ["sqs:ListQueues", "s3:Get*"], "Resource": "*"}
    assert no_write_action_on_any_resource(mutated(template, _add_statement("UploadFunction", read_only))) == []


def test_cfn_lint_misses_the_visibility_timeout_mistake_the_rule_catches(tmp_path: Path) -> None:
    """Why the visibility rule exists: cfn-lint passes a template Lambda would reject (docs/sources.md#aws-pitfalls)."""
    text = DEFAULT_TEMPLATE.read_text().replace("VisibilityTimeout: 360", "VisibilityTimeout: 30")
    assert "VisibilityTimeout: 30 " in text
    broken = tmp_path / "template.yaml"
    broken.write_text(text)
    assert lint(text) == []
    assert visibility_covers_consumer_timeout(Template.load(broken)) == [
        "RawQueue: VisibilityTimeout 30 < 6 x TransformFunction.Timeout 60"
    ]


def _dashboard(template: Template, parameters: dict[str, str]) -> tuple[Template, list[dict[str, Any]]]:
    """The stack these parameters deploy, and its dashboard's widgets as CloudWatch receives them (every `Ref` a
    resource's logical id, every QueueName the queue's logical id)."""
    import json

    from localdev.aws.intrinsics import StackValues
    from localdev.aws.resources import pseudo_parameters

    values = parameter_values(template, parameters)
    deployed = template.with_conditions(values)
    stack = StackValues()
    stack.refs.update(pseudo_parameters("cmsync", "eu-west-1"))
    stack.refs.update(values)
    stack.refs.update({logical_id: logical_id for logical_id in deployed.resources})
    stack.attributes.update({(queue, "QueueName"): queue for queue in deployed.queues})
    stack.evaluate_conditions(template.raw.get("Conditions", {}))
    body = stack.resolve(deployed.resources["PipelineDashboard"]["Properties"]["DashboardBody"])
    widgets: list[dict[str, Any]] = json.loads(body)["widgets"]  # valid JSON, with the path or without
    return deployed, widgets


@pytest.mark.parametrize("realtime", [True, False], ids=["with the near-real-time path", "without"])
def test_the_dashboard_shows_every_function_and_queue_the_stack_deploys(template: Template, realtime: bool) -> None:
    source = {"StripePartnerEventSourceName": "aws.partner/stripe.com/ed_test_61abc"} if realtime else {}
    deployed, widgets = _dashboard(template, source)
    shown = {
        (row[1], row[3])  # (metric, function or queue)
        for widget in widgets
        for row in widget["properties"]["metrics"]
        if row[2] in ("FunctionName", "QueueName")
    }
    functions, queues = set(deployed.functions), set(deployed.queues)
    for function in functions:
        assert {("Errors", function), ("Throttles", function)} <= shown, function
    for queue in queues:
        assert ("ApproximateNumberOfMessagesVisible", queue) in shown, queue
        if deployed.consumers_of(queue):  # a work queue: how long its oldest message has waited too
            assert ("ApproximateAgeOfOldestMessage", queue) in shown, queue
    assert {name for _, name in shown} <= functions | queues  # nothing the stack does not deploy
    stripe_events = {"StripeEventsFunction", "StripeEventsQueue", "StripeEventsDeadLetterQueue"}
    assert (stripe_events <= {name for _, name in shown}) is realtime
    if realtime:
        assert ("Duration", "StripeEventsFunction") in shown
        for widget in widgets:  # every widget names its region, as the dashboard's others do
            assert widget["properties"]["region"] == "eu-west-1"
