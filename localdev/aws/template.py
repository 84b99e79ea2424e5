"""Read `template.yaml` into typed specs: the one place that knows the template's shape.

The local runtime builds its moto stack from these specs and the template-invariant tests check them, so both
read the template the same way. Parsing uses cfn-lint's decoder, which understands the short intrinsic tags
(`!Ref`, `!GetAtt`, `!Sub`) and turns them into their long JSON form (`{"Ref": ...}`, `{"Fn::GetAtt": [...]}`).

Values that may be intrinsics (a queue ARN, a parameter reference) are kept raw; `Template.static_value`
resolves the ones that need no deployed resource (parameters and pseudo parameters).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"

# CloudFormation / SQS defaults for properties a template may leave out.
DEFAULT_FUNCTION_TIMEOUT = 3
DEFAULT_MEMORY_SIZE = 128
DEFAULT_VISIBILITY_TIMEOUT = 30
DEFAULT_RETENTION_SECONDS = 345_600
DEFAULT_SQS_BATCH_SIZE = 10

FUNCTION_TYPE = "AWS::Serverless::Function"
QUEUE_TYPE = "AWS::SQS::Queue"
TABLE_TYPE = "AWS::DynamoDB::Table"
BUCKET_TYPE = "AWS::S3::Bucket"
SECRET_TYPE = "AWS::SecretsManager::Secret"
ALARM_TYPE = "AWS::CloudWatch::Alarm"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
EVENT_SOURCE_MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"
EVENT_BUS_TYPE = "AWS::Events::EventBus"
EVENT_RULE_TYPE = "AWS::Events::Rule"


class TemplateError(ValueError):
    """The template cannot be read into specs (bad syntax, or a shape this module does not understand)."""


@dataclass(frozen=True)
class Redrive:
    dead_letter_queue: str  # logical id of the DLQ
    max_receive_count: int


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    properties: dict[str, Any]

    @property
    def fifo(self) -> bool:
        return bool(self.properties.get("FifoQueue", False))

    @property
    def visibility_timeout(self) -> int:
        return int(self.properties.get("VisibilityTimeout", DEFAULT_VISIBILITY_TIMEOUT))

    @property
    def retention_seconds(self) -> int:
        return int(self.properties.get("MessageRetentionPeriod", DEFAULT_RETENTION_SECONDS))

    @property
    def encrypted(self) -> bool:
        return bool(self.properties.get("SqsManagedSseEnabled")) or "KmsMasterKeyId" in self.properties

    @property
    def redrive(self) -> Redrive | None:
        policy = self.properties.get("RedrivePolicy")
        if policy is None:
            return None
        return Redrive(
            dead_letter_queue=logical_id_of(policy.get("deadLetterTargetArn")),
            max_receive_count=int(policy.get("maxReceiveCount", 0)),
        )


@dataclass(frozen=True)
class SqsEventSource:
    name: str
    queue: str  # logical id of the source queue
    batch_size: int
    batching_window_seconds: int
    function_response_types: tuple[str, ...]
    maximum_concurrency: Any  # raw: an int or a {"Ref": parameter}; None when unset

    @property
    def reports_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass(frozen=True)
class ScheduleEvent:
    name: str
    expression: Any
    input: str | None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    properties: dict[str, Any]  # with SAM Globals merged in
    sqs_events: tuple[SqsEventSource, ...]
    schedule_events: tuple[ScheduleEvent, ...]
    code_dir: Path

    @property
    def handler(self) -> str:
        return str(self.properties["Handler"])

    @property
    def timeout(self) -> int:
        return int(self.properties.get("Timeout", DEFAULT_FUNCTION_TIMEOUT))

    @property
    def memory_size(self) -> int:
        return int(self.properties.get("MemorySize", DEFAULT_MEMORY_SIZE))

    @property
    def environment(self) -> dict[str, Any]:
        return dict(self.properties.get("Environment", {}).get("Variables", {}))

    @property
    def policies(self) -> list[Any]:
        policies = self.properties.get("Policies", [])
        return list(policies) if isinstance(policies, list) else [policies]


@dataclass(frozen=True)
class ResourceSpec:
    """A table, bucket, secret, alarm or layer: the runtime reads its properties directly."""

    logical_id: str
    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    properties: dict[str, Any]

    @property
    def default(self) -> Any:
        return self.properties.get("Default")


class Template:
    """A parsed SAM template with typed views of the parts the local runtime and the invariant tests use."""

    def __init__(self, raw: Mapping[str, Any], base_dir: Path) -> None:
        self.raw: dict[str, Any] = copy.deepcopy(dict(raw))
        self.base_dir = base_dir
        resources = self.raw.get("Resources")
        if not isinstance(resources, dict):
            raise TemplateError("template has no Resources section")
        self.resources: dict[str, dict[str, Any]] = resources

    @classmethod
    def load(cls, path: Path = DEFAULT_TEMPLATE) -> Template:
        decoded, errors = decode(str(path))
        if errors or decoded is None:
            raise TemplateError(f"{path}: " + "; ".join(str(e) for e in errors))
        # A JSON round trip turns cfn-lint's position-carrying nodes into plain dicts, lists and strings.
        return cls(json.loads(json.dumps(decoded)), path.parent)

    # ------------------------------------------------------------------ typed views
    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r.get("Type") == resource_type}

    @property
    def parameters(self) -> dict[str, ParameterSpec]:
        return {name: ParameterSpec(name, dict(p)) for name, p in self.raw.get("Parameters", {}).items()}

    @property
    def queues(self) -> dict[str, QueueSpec]:
        return {lid: QueueSpec(lid, dict(r.get("Properties", {}))) for lid, r in self.of_type(QUEUE_TYPE).items()}

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        return {lid: self._function_spec(lid, r) for lid, r in self.of_type(FUNCTION_TYPE).items()}

    def other_resources(self, resource_type: str) -> dict[str, ResourceSpec]:
        return {
            lid: ResourceSpec(lid, resource_type, dict(r.get("Properties", {})))
            for lid, r in self.of_type(resource_type).items()
        }

    @property
    def tables(self) -> dict[str, ResourceSpec]:
        return self.other_resources(TABLE_TYPE)

    @property
    def buckets(self) -> dict[str, ResourceSpec]:
        return self.other_resources(BUCKET_TYPE)

    @property
    def secrets(self) -> dict[str, ResourceSpec]:
        return self.other_resources(SECRET_TYPE)

    @property
    def alarms(self) -> dict[str, ResourceSpec]:
        return self.other_resources(ALARM_TYPE)

    @property
    def event_buses(self) -> dict[str, ResourceSpec]:
        return self.other_resources(EVENT_BUS_TYPE)

    @property
    def event_rules(self) -> dict[str, ResourceSpec]:
        return self.other_resources(EVENT_RULE_TYPE)

    def with_conditions(self, parameters: Mapping[str, str]) -> Template:
        """The template as CloudFormation deploys it with these parameter values: without the resources and
        outputs whose `Condition` is false.

        Conditions may use `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition` and `Ref` to a parameter;
        anything else raises, so a new construct fails loudly instead of creating the wrong stack.
        """
        conditions = self.raw.get("Conditions", {})
        values: dict[str, bool] = {}

        def condition(name: str) -> bool:
            if name not in values:
                if name not in conditions:
                    raise TemplateError(f"Condition {name!r} is not declared")
                values[name] = bool(_evaluate_condition(conditions[name], parameters, condition))
            return values[name]

        raw = copy.deepcopy(self.raw)
        for section in ("Resources", "Outputs"):
            entries = raw.get(section, {})
            for logical_id in [lid for lid, entry in entries.items() if "Condition" in entry]:
                if not condition(entries[logical_id]["Condition"]):
                    del entries[logical_id]
        return Template(raw, self.base_dir)

    def consumers_of(self, queue_logical_id: str) -> list[tuple[FunctionSpec, SqsEventSource]]:
        """Every (function, event source) pair that polls the queue."""
        return [
            (function, source)
            for function in self.functions.values()
            for source in function.sqs_events
            if source.queue == queue_logical_id
        ]

    def static_value(self, value: Any, parameter_overrides: Mapping[str, str] | None = None) -> Any:
        """Resolve a value that needs no deployed resource: a literal or a {"Ref": parameter}."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            if parameter_overrides and name in parameter_overrides:
                return parameter_overrides[name]
            if name in self.parameters:
                return self.parameters[name].default
            raise TemplateError(f"{value} does not name a parameter")
        return value

    # ------------------------------------------------------------------ internals
    def _function_spec(self, logical_id: str, resource: dict[str, Any]) -> FunctionSpec:
        properties = merge_function_globals(
            self.raw.get("Globals", {}).get("Function", {}), resource.get("Properties", {})
        )
        sqs_events: list[SqsEventSource] = []
        schedule_events: list[ScheduleEvent] = []
        for name, event in properties.get("Events", {}).items():
            event_properties = event.get("Properties", {})
            if event.get("Type") == "SQS":
                sqs_events.append(
                    SqsEventSource(
                        name=name,
                        queue=logical_id_of(event_properties["Queue"]),
                        batch_size=int(event_properties.get("BatchSize", DEFAULT_SQS_BATCH_SIZE)),
                        batching_window_seconds=int(event_properties.get("MaximumBatchingWindowInSeconds", 0)),
                        function_response_types=tuple(event_properties.get("FunctionResponseTypes", [])),
                        maximum_concurrency=event_properties.get("ScalingConfig", {}).get("MaximumConcurrency"),
                    )
                )
            elif event.get("Type") == "ScheduleV2":
                schedule_events.append(
                    ScheduleEvent(name, event_properties.get("ScheduleExpression"), event_properties.get("Input"))
                )
        # Plain event source mappings (a conditional trigger cannot be a SAM event) poll for the function too.
        for name, mapping in self.of_type(EVENT_SOURCE_MAPPING_TYPE).items():
            mapping_properties = mapping.get("Properties", {})
            if mapping_properties.get("FunctionName") != {"Ref": logical_id}:
                continue
            sqs_events.append(
                SqsEventSource(
                    name=name,
                    queue=logical_id_of(mapping_properties["EventSourceArn"]),
                    batch_size=int(mapping_properties.get("BatchSize", DEFAULT_SQS_BATCH_SIZE)),
                    batching_window_seconds=int(mapping_properties.get("MaximumBatchingWindowInSeconds", 0)),
                    function_response_types=tuple(mapping_properties.get("FunctionResponseTypes", [])),
                    maximum_concurrency=mapping_properties.get("ScalingConfig", {}).get("MaximumConcurrency"),
                )
            )
        code_uri = properties.get("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: CodeUri must be a local directory")
        return FunctionSpec(
            logical_id=logical_id,
            properties=properties,
            sqs_events=tuple(sqs_events),
            schedule_events=tuple(schedule_events),
            code_dir=(self.base_dir / code_uri).resolve(),
        )


def _evaluate_condition(node: Any, parameters: Mapping[str, str], condition: Any) -> Any:
    """One condition expression: a bool for the functions, a string for a `Ref` or a literal."""
    if isinstance(node, dict) and len(node) == 1:
        ((name, argument),) = node.items()
        if name == "Ref":
            if argument not in parameters:
                raise TemplateError(f"condition refers to {argument!r}, which is not a parameter with a value")
            return str(parameters[argument])
        if name == "Condition":
            return condition(argument)
        if name == "Fn::Equals":
            left, right = (_evaluate_condition(item, parameters, condition) for item in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not _evaluate_condition(argument[0], parameters, condition)
        if name == "Fn::And":
            return all(_evaluate_condition(item, parameters, condition) for item in argument)
        if name == "Fn::Or":
            return any(_evaluate_condition(item, parameters, condition) for item in argument)
        raise TemplateError(f"the local runtime does not evaluate {name} in a condition")
    if isinstance(node, str | int | float | bool):
        return node
    raise TemplateError(f"cannot evaluate condition {node!r}")


def merge_function_globals(globals_: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: the function's scalars win, maps merge (Environment.Variables), lists concatenate.

    Source: SAM developer guide, "Globals section of the AWS SAM template" ("Overridable" rules).
    """
    merged: dict[str, Any] = copy.deepcopy(dict(globals_))
    for key, value in properties.items():
        if key == "Environment" and "Environment" in merged:
            variables = {**merged["Environment"].get("Variables", {}), **value.get("Variables", {})}
            merged["Environment"] = {"Variables": variables}
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def logical_id_of(reference: Any) -> str:
    """The logical id a `!GetAtt X.Arn` / `!Ref X` points at."""
    if isinstance(reference, dict):
        if "Fn::GetAtt" in reference:
            target = reference["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".", 1)[0])
        if "Ref" in reference:
            return str(reference["Ref"])
    raise TemplateError(f"expected a Ref or GetAtt to a resource, got {reference!r}")
