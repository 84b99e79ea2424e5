"""Create in moto exactly the queues, tables, buckets, secrets and EventBridge buses and rules `template.yaml`
declares (with the parameters' conditions applied: `Template.with_conditions`).

Names follow CloudFormation's pattern (`<stack>-<LogicalId>`, without the random suffix) unless the template
names the resource. Declared attributes are applied as declared, so what a test observes locally (visibility
timeout, redrive, FIFO, retention, encryption, TTL, lifecycle, a queue's tags) is what the deployed stack would have.
Resource types the runtime does not need (alarms, IAM, the bucket policy, the layer) are not created.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from localdev.aws.intrinsics import NO_VALUE, StackValues
from localdev.aws.template import QueueSpec, ResourceSpec, Template

ACCOUNT_ID = "123456789012"  # moto's default account


class AwsClients:
    """The boto3 clients the runtime uses; all made from one session and one endpoint."""

    def __init__(self, session: Any, endpoint_url: str | None, region: str) -> None:
        def make(service: str) -> Any:
            return session.client(service, region_name=region, endpoint_url=endpoint_url)

        self.sqs = make("sqs")
        self.dynamodb = make("dynamodb")
        self.s3 = make("s3")
        self.secretsmanager = make("secretsmanager")
        self.events = make("events")


def pseudo_parameters(stack_name: str, region: str) -> dict[str, str]:
    return {
        "AWS::StackName": stack_name,
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


def parameter_values(template: Template, overrides: Mapping[str, str]) -> dict[str, str]:
    unknown = set(overrides) - set(template.parameters)
    if unknown:
        raise ValueError(f"unknown template parameters: {sorted(unknown)}")
    values = {name: str(p.default) for name, p in template.parameters.items() if p.default is not None}
    values.update(overrides)
    missing = set(template.parameters) - set(values)
    if missing:
        raise ValueError(f"template parameters without a default need a value: {sorted(missing)}")
    return values


def create_stack_resources(
    template: Template, clients: AwsClients, stack_name: str, region: str, parameters: Mapping[str, str]
) -> StackValues:
    values = StackValues()
    values.refs.update(pseudo_parameters(stack_name, region))
    values.refs.update(parameters)
    values.evaluate_conditions(template.raw.get("Conditions", {}))
    _create_queues(template.queues, clients.sqs, stack_name, values)
    for table in template.tables.values():
        _create_table(table, clients.dynamodb, stack_name, values)
    for bucket in template.buckets.values():
        _create_bucket(bucket, clients.s3, stack_name, region, values)
    for secret in template.secrets.values():
        _create_secret(secret, clients.secretsmanager, values)
    for bus in template.event_buses.values():
        _create_event_bus(bus, clients.events, values)
    for rule in template.event_rules.values():
        _create_event_rule(rule, clients.events, stack_name, values)
    return values


def physical_name(stack_name: str, logical_id: str, max_length: int) -> str:
    return f"{stack_name}-{logical_id}"[:max_length]


# --------------------------------------------------------------------------------------------- SQS
def _create_queues(queues: Mapping[str, QueueSpec], sqs: Any, stack_name: str, values: StackValues) -> None:
    # Create every queue first and add redrive policies after, so a DLQ need not be declared before its source.
    for queue in queues.values():
        name = values.resolve(queue.properties.get("QueueName")) or physical_name(stack_name, queue.logical_id, 75)
        if queue.fifo and not name.endswith(".fifo"):
            name += ".fifo"
        tags = {str(t["Key"]): str(t["Value"]) for t in values.resolve(queue.properties.get("Tags") or [])}
        url = sqs.create_queue(QueueName=name, Attributes=_queue_attributes(queue, values), tags=tags)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        values.refs[queue.logical_id] = url  # Ref of an AWS::SQS::Queue is its URL
        values.attributes[(queue.logical_id, "Arn")] = arn
        values.attributes[(queue.logical_id, "QueueName")] = name
        values.attributes[(queue.logical_id, "QueueUrl")] = url
    for queue in queues.values():
        redrive = queue.properties.get("RedrivePolicy")
        if redrive is not None:
            policy = {
                "deadLetterTargetArn": values.resolve(redrive["deadLetterTargetArn"]),
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
            }
            sqs.set_queue_attributes(
                QueueUrl=values.refs[queue.logical_id], Attributes={"RedrivePolicy": json.dumps(policy)}
            )


# CloudFormation property → SQS attribute, for the attributes passed through unchanged.
_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "DelaySeconds": "DelaySeconds",
    "MaximumMessageSize": "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "FifoQueue": "FifoQueue",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "DeduplicationScope": "DeduplicationScope",
    "FifoThroughputLimit": "FifoThroughputLimit",
    "SqsManagedSseEnabled": "SqsManagedSseEnabled",
    "KmsMasterKeyId": "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
}


def _queue_attributes(queue: QueueSpec, values: StackValues) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for prop, attribute in _QUEUE_ATTRIBUTES.items():
        if prop in queue.properties:
            value = values.resolve(queue.properties[prop])
            if value is NO_VALUE:
                continue
            attributes[attribute] = str(value).lower() if isinstance(value, bool) else str(value)
    return attributes


# ---------------------------------------------------------------------------------------- DynamoDB
def _create_table(table: ResourceSpec, dynamodb: Any, stack_name: str, values: StackValues) -> None:
    p = values.resolve(table.properties)
    name = p.get("TableName") or physical_name(stack_name, table.logical_id, 255)
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "BillingMode": p.get("BillingMode", "PROVISIONED"),
    }
    for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
        if key in p:
            request[key] = p[key]
    if "SSESpecification" in p:
        sse = p["SSESpecification"]
        request["SSESpecification"] = {
            "Enabled": bool(sse.get("SSEEnabled", False)),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    description = dynamodb.create_table(**request)["TableDescription"]
    ttl = p.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    pitr = p.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    values.refs[table.logical_id] = name
    values.attributes[(table.logical_id, "Arn")] = description["TableArn"]


# ---------------------------------------------------------------------------------------------- S3
def _bucket_name(stack_name: str, logical_id: str) -> str:
    # Bucket names: 3-63 lowercase letters, digits and hyphens.
    return re.sub(r"[^a-z0-9-]", "-", f"{stack_name}-{logical_id}".lower())[:63].strip("-")


def _create_bucket(bucket: ResourceSpec, s3: Any, stack_name: str, region: str, values: StackValues) -> None:
    p = values.resolve(bucket.properties)
    name = p.get("BucketName") or _bucket_name(stack_name, bucket.logical_id)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    if "BucketEncryption" in p:
        # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault.
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
            }
            for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in p:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
    if "OwnershipControls" in p:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=p["OwnershipControls"])
    if "LifecycleConfiguration" in p:
        rules = [_lifecycle_rule(rule) for rule in p["LifecycleConfiguration"]["Rules"]]
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    values.refs[bucket.logical_id] = name
    values.attributes[(bucket.logical_id, "Arn")] = f"arn:aws:s3:::{name}"


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape → the S3 API's (only the fields this project uses)."""
    api_rule: dict[str, Any] = {"Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        api_rule["ID"] = rule["Id"]
    if "ExpirationInDays" in rule:
        api_rule["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        api_rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    if "NoncurrentVersionExpirationInDays" in rule:
        api_rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    return api_rule


# ------------------------------------------------------------------------------------------ Secrets
def _create_secret(secret: ResourceSpec, secretsmanager: Any, values: StackValues) -> None:
    p = values.resolve(secret.properties)
    # Like the template, the secret starts without a value; LocalStack.put_secret_value sets one.
    request: dict[str, Any] = {"Name": p["Name"]}
    if "Description" in p:
        request["Description"] = p["Description"]
    arn = secretsmanager.create_secret(**request)["ARN"]
    values.refs[secret.logical_id] = arn  # Ref of an AWS::SecretsManager::Secret is its ARN
    values.attributes[(secret.logical_id, "Id")] = arn


# -------------------------------------------------------------------------------------- EventBridge
def _create_event_bus(bus: ResourceSpec, events: Any, values: StackValues) -> None:
    p = values.resolve(bus.properties)
    source = p.get("EventSourceName")
    if source:
        # Stand-in for the partner: a Stripe event destination of type Amazon EventBridge creates its partner event
        # source in the account before anyone associates a bus with it (docs.stripe.com/event-destinations/
        # eventbridge), and moto, like EventBridge, refuses a bus for a source that does not exist.
        events.create_partner_event_source(Name=source, Account=ACCOUNT_ID)
    # moto addresses every bus by what follows the last "/" of the name or ARN it is given
    # (moto/events/models.py `_normalize_event_bus_arn`), so a partner bus (aws.partner/stripe.com/ed_...) is
    # created under that last part; rules, targets and events then address it by its real name, as deployed.
    moto_name = str(p["Name"]).rsplit("/", 1)[-1]
    request: dict[str, Any] = {"Name": moto_name, **({"EventSourceName": source} if source else {})}
    arn = events.create_event_bus(**request)["EventBusArn"]
    values.refs[bus.logical_id] = p["Name"]  # Ref of an AWS::Events::EventBus is its name
    values.attributes[(bus.logical_id, "Name")] = p["Name"]
    values.attributes[(bus.logical_id, "Arn")] = arn


def _create_event_rule(rule: ResourceSpec, events: Any, stack_name: str, values: StackValues) -> None:
    p = values.resolve(rule.properties)
    name = p.get("Name") or physical_name(stack_name, rule.logical_id, 64)
    bus = p.get("EventBusName", "default")
    request: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": p.get("State", "ENABLED")}
    if "EventPattern" in p:
        request["EventPattern"] = json.dumps(p["EventPattern"])
    if "ScheduleExpression" in p:
        request["ScheduleExpression"] = p["ScheduleExpression"]
    if "Description" in p:
        request["Description"] = p["Description"]
    arn = events.put_rule(**request)["RuleArn"]
    # Target properties keep their names in the API (Id, Arn, RetryPolicy, DeadLetterConfig, InputPath...).
    targets = [dict(target) for target in p.get("Targets", [])]
    if targets:
        result = events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        if result.get("FailedEntryCount"):
            raise RuntimeError(f"{rule.logical_id}: targets refused: {result['FailedEntries']}")
    values.refs[rule.logical_id] = name  # Ref of an AWS::Events::Rule is its name
    values.attributes[(rule.logical_id, "Arn")] = arn
