"""The mapping config: the product decisions a user can change, as a YAML file validated by pydantic.

Every key and its default is documented in docs/mapping-decisions.md; `events/mapping-config.example.yaml` shows
them all. Unknown keys are errors (a typo must not silently fall back to a default), and every error names the
key it is about, e.g. `invoices.void: Input should be 'include' or 'exclude'`.
"""

import string
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..models.chartmogul import CustomAttributeType

# Placeholders a plan name template may use (filled per Stripe price by the mapping).
PLAN_NAME_PLACEHOLDERS = frozenset({"product", "product_id", "nickname", "interval", "price_id", "currency"})


class _ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusHandling(StrEnum):
    INCLUDE = "include"
    EXCLUDE = "exclude"


class SubscriptionIdSource(StrEnum):
    ITEM = "item"  # si_… (default): one ChartMogul subscription per Stripe subscription item
    SUBSCRIPTION = "subscription"  # sub_…: only for accounts whose subscriptions have a single item


class MeteredHandling(StrEnum):
    SUBSCRIPTION = "subscription"  # in MRR, with the usage period as service period
    ONE_TIME = "one_time"  # out of MRR


class UnpaidHandling(StrEnum):
    NO_ACTION = "no_action"  # the subscription stays in MRR until it is cancelled (ChartMogul's default)
    CHURN = "churn"  # cancel when Stripe gave up collecting


class DeletedCustomerHandling(StrEnum):
    KEEP = "keep"
    DELETE = "delete"


class PlanOverride(_ConfigModel):
    """One Stripe price's plan. Prices given the same `external_id` are merged into one ChartMogul plan."""

    external_id: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)


class PlansConfig(_ConfigModel):
    name_template: str = "{product} ({interval})"
    overrides: dict[str, PlanOverride] = Field(default_factory=dict)

    @field_validator("name_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as error:
            raise ValueError(f"not a valid template: {error}") from None
        unknown = sorted(f for f in fields if f not in PLAN_NAME_PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}; "
                f"known: {', '.join('{' + f + '}' for f in sorted(PLAN_NAME_PLACEHOLDERS))}"
            )
        return template

    @model_validator(mode="after")
    def _merged_plans_agree_on_name(self) -> Self:
        names: dict[str, tuple[str, str]] = {}
        for price_id, override in sorted(self.overrides.items()):
            if override.external_id is None or override.name is None:
                continue
            seen = names.setdefault(override.external_id, (price_id, override.name))
            if seen[1] != override.name:
                raise ValueError(
                    f"overrides.{price_id}.name: prices {seen[0]} and {price_id} are merged into plan "
                    f"{override.external_id!r} but name it {seen[1]!r} and {override.name!r}"
                )
        return self

    def plan_external_id(self, price_id: str) -> str:
        override = self.overrides.get(price_id)
        return override.external_id if override and override.external_id else price_id


class InvoicesConfig(_ConfigModel):
    void: StatusHandling = StatusHandling.EXCLUDE
    uncollectible: StatusHandling = StatusHandling.INCLUDE


class ExcludeConfig(_ConfigModel):
    products: list[str] = Field(default_factory=list)
    prices: list[str] = Field(default_factory=list)
    customers: list[str] = Field(default_factory=list)


class MetadataAttribute(_ConfigModel):
    key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+$")  # default: the metadata key, sanitised
    type: CustomAttributeType = CustomAttributeType.STRING


class AttributesConfig(_ConfigModel):
    # all: every metadata key becomes a String attribute (ChartMogul's Stripe integration does this), with the
    # entries of `metadata` overriding key and type; listed: only the keys in `metadata`; none: no attributes.
    from_metadata: Literal["all", "listed", "none"] = "all"
    metadata: dict[str, MetadataAttribute] = Field(default_factory=dict)


class TagsConfig(_ConfigModel):
    static: list[str] = Field(default_factory=list)
    # Metadata keys whose *value* becomes a tag (e.g. `segment: enterprise` → tag `enterprise`).
    from_metadata: list[str] = Field(default_factory=list)
    deleted_customer: str = Field(default="deleted-in-stripe", min_length=1)

    @field_validator("static")
    @classmethod
    def _no_empty_tags(cls, tags: list[str]) -> list[str]:
        if any(not tag.strip() for tag in tags):
            raise ValueError("tags must not be empty")
        return tags


class CustomersConfig(_ConfigModel):
    attributes: AttributesConfig = Field(default_factory=AttributesConfig)
    tags: TagsConfig = Field(default_factory=TagsConfig)
    # A customer deleted in Stripe (and kept in ChartMogul): `scrub` sends no name, email, company, address or
    # metadata attributes for it (deletion is often a GDPR erasure, and ChartMogul's own "include deleted
    # customers" handling removes personal data); `keep` keeps them.
    deleted_personal_data: Literal["scrub", "keep"] = "scrub"


class MappingConfig(_ConfigModel):
    """The whole mapping config. `MappingConfig()` is the documented defaults."""

    version: Literal[1] = 1
    plans: PlansConfig = Field(default_factory=PlansConfig)
    subscription_id: SubscriptionIdSource = SubscriptionIdSource.ITEM
    invoices: InvoicesConfig = Field(default_factory=InvoicesConfig)
    exclude: ExcludeConfig = Field(default_factory=ExcludeConfig)
    metered: MeteredHandling = MeteredHandling.SUBSCRIPTION
    unpaid: UnpaidHandling = UnpaidHandling.NO_ACTION
    deleted_customers: DeletedCustomerHandling = DeletedCustomerHandling.KEEP
    customers: CustomersConfig = Field(default_factory=CustomersConfig)


class MappingConfigError(ValueError):
    """A mapping config that cannot be used; `problems` holds one `key: reason` line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (YAML 1.2 requires unique
    keys, https://yaml.org/spec/1.2.2/#mapping; PyYAML would keep the last value silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {seen[key]})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_mapping_config(text: str, source: str = "<config>") -> MappingConfig:
    """Parse YAML text into a MappingConfig; an empty document is the defaults."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise MappingConfigError(source, [f"{where}not valid YAML ({problem})"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingConfigError(source, [f"(top level): expected a mapping of keys, got {type(data).__name__}"])
    try:
        return MappingConfig.model_validate(data)
    except ValidationError as error:
        raise MappingConfigError(source, describe_validation_error(error)) from None


def load_mapping_config(path: str | Path | None) -> MappingConfig:
    """The config at `path`, or the defaults when `path` is None."""
    if path is None:
        return MappingConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise MappingConfigError(str(path), [f"cannot be read ({error.strerror or error})"]) from None
    return parse_mapping_config(text, source=str(path))


def describe_validation_error(error: ValidationError) -> list[str]:
    """One `dotted.key: message` line per pydantic error, the form every error of ours uses."""
    lines = []
    for problem in error.errors(include_url=False):
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key (a typo? see docs/mapping-decisions.md for the keys)"
        lines.append(f"{key}: {message}")
    return lines
