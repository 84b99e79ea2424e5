"""Resolve the CloudFormation intrinsics the template uses, against a locally created stack.

Only what the template needs: `Ref`, `Fn::GetAtt`, `Fn::Sub` and `Fn::Join`. Anything else raises, so a new
intrinsic in the template fails loudly in the local runtime instead of reaching a handler half-resolved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class UnresolvableError(ValueError):
    """A value refers to something the local stack does not have."""


@dataclass
class StackValues:
    """What `Ref` and `Fn::GetAtt` return for the locally created stack, keyed like the template."""

    refs: dict[str, str] = field(default_factory=dict)  # logical id / parameter / pseudo parameter → value
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical id, attribute) → value

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
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
        return {key: self.resolve(item) for key, item in value.items()}

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
