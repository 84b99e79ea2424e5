"""Resolve the CloudFormation intrinsics the template uses, against a locally created stack.

Only what the template needs: `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join` and `Fn::If` (with the template's
Conditions, and `AWS::NoValue` removing the property or list item it stands for). Anything else raises, so a new
intrinsic in the template fails loudly in the local runtime instead of reaching a handler half-resolved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class _NoValue:
    """What `Ref: AWS::NoValue` resolves to: dropped from the dict or list holding it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


class UnresolvableError(ValueError):
    """A value refers to something the local stack does not have."""


@dataclass
class StackValues:
    """What `Ref` and `Fn::GetAtt` return for the locally created stack, keyed like the template."""

    refs: dict[str, str] = field(default_factory=dict)  # logical id / parameter / pseudo parameter → value
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical id, attribute) → value
    conditions: dict[str, bool] = field(default_factory=dict)  # the template's Conditions, evaluated

    def evaluate_conditions(self, conditions: Mapping[str, Any]) -> None:
        """Evaluate the template's Conditions section against the parameters in `refs`."""
        for name in conditions:
            self.conditions[name] = self._condition(conditions, name, set())

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(item) for item in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" and argument == "AWS::NoValue":
                return NO_VALUE
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::If":
                condition, when_true, when_false = argument
                if condition not in self.conditions:
                    raise UnresolvableError(f"Fn::If: no condition {condition!r}")
                return self.resolve(when_true if self.conditions[condition] else when_false)
            if key == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self._attribute(logical_id, attribute)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::Join":
                delimiter, items = argument
                return delimiter.join(str(self.resolve(item)) for item in items)
            if key.startswith("Fn::"):
                raise UnresolvableError(f"the local runtime does not implement {key}")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _condition(self, conditions: Mapping[str, Any], name: str, seen: set[str]) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        if name in seen or name not in conditions:
            raise UnresolvableError(f"condition {name!r} is unknown or circular")
        return self._truth(conditions, conditions[name], seen | {name})

    def _truth(self, conditions: Mapping[str, Any], expression: Any, seen: set[str]) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise UnresolvableError(f"not a condition expression: {expression!r}")
        ((function, argument),) = expression.items()
        if function == "Condition":
            return self._condition(conditions, argument, seen)
        if function == "Fn::Equals":
            left, right = (str(self.resolve(item)) for item in argument)
            return left == right
        if function == "Fn::Not":
            return not self._truth(conditions, argument[0], seen)
        if function == "Fn::And":
            return all(self._truth(conditions, item, seen) for item in argument)
        if function == "Fn::Or":
            return any(self._truth(conditions, item, seen) for item in argument)
        raise UnresolvableError(f"the local runtime does not implement {function} in a condition")

    def _ref(self, name: str) -> str:
        try:
            return self.refs[name]
        except KeyError:
            raise UnresolvableError(f"Ref {name}: not created locally") from None

    def _attribute(self, logical_id: str, attribute: str) -> str:
        try:
            return self.attributes[(logical_id, attribute)]
        except KeyError:
            raise UnresolvableError(f"GetAtt {logical_id}.{attribute}: not created locally") from None

    def _sub(self, argument: str | list[Any]) -> str:
        if isinstance(argument, list):
            text, extra = argument[0], {k: str(self.resolve(v)) for k, v in argument[1].items()}
        else:
            text, extra = argument, {}
        return _SUB_VARIABLE.sub(lambda m: self._sub_variable(m.group(1), extra), text)

    def _sub_variable(self, name: str, extra: Mapping[str, str]) -> str:
        if name in extra:
            return extra[name]
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return self._attribute(logical_id, attribute)
        return self._ref(name)
