"""Which request parameters each endpoint takes, read from the pinned `stripe` package's params annotations.

Stripe refuses what an endpoint does not define, so a wrong request fails loudly instead of being answered as if
the parameter were absent (`customer=` on `GET /v1/refunds` would otherwise list every refund):

- an unknown parameter, at any depth: 400 `parameter_unknown`, "Received unknown parameter: created[foo]"
  (Stripe's wording and code, e.g. github.com/stripe/stripe-node/issues/317 and vizhub-studio/vizhub#333);
- a value outside an enum (`status=bogus`): 400 "Invalid status: must be one of a, b, or c", param `status`;
- a boolean that is not `true`/`false`.

The definitions are the TypedDicts of `stripe/params/_<resource>_<list|retrieve>_params.py` in stripe 16.1.0,
generated from Stripe's OpenAPI spec ("File generated from our OpenAPI spec"): their keys are the parameters,
`Literal[...]` annotations the enums (the package adds `|str` for forward compatibility only; the API refuses
other values), nested `...Params<Field>` TypedDicts the sub-parameters (`created[gte]`). The request options of
`stripe/_request_options.py` (`api_key`, `stripe_version`...) are the client's, never sent as parameters.

A parameter Stripe knows that the emulator does not implement (a filter it would silently ignore) is refused too,
with a message saying so: the emulator never answers a request it did not understand.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import stripe.params
from stripe._request_options import RequestOptions

from localdev.stripe_emulator.errors import StripeApiError, invalid

_CLIENT_OPTIONS = frozenset(RequestOptions.__annotations__)
_LITERAL = re.compile(r"Literal\[([^\]]*)\]")
_NESTED = re.compile(r"\b([A-Z][A-Za-z0-9]*Params[A-Za-z0-9]+)\b")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its enum values (if any), its sub-parameters (if a hash), whether it is a boolean."""

    choices: tuple[str, ...] | None = None
    nested: dict[str, ParamSpec] | None = None
    scalar_allowed: bool = True  # `created` takes an integer or a hash; `recurring` only a hash
    boolean: bool = False


def _annotation_text(annotation: Any) -> str:
    forward = getattr(annotation, "__forward_arg__", None)
    text = repr(annotation)
    inner = re.search(r"ForwardRef\((['\"])(.*)\1\)", text)
    if forward is not None:
        return str(forward)
    return inner.group(2) if inner else text


@cache
def params_of(class_name: str) -> dict[str, ParamSpec]:
    """The parameters of one params TypedDict of the stripe package, e.g. `RefundListParams`."""
    cls = getattr(stripe.params, class_name, None)
    if cls is None:
        raise KeyError(f"stripe {stripe.VERSION} has no params class {class_name}")
    return _spec_of(cls)


def _spec_of(cls: type) -> dict[str, ParamSpec]:
    module = sys.modules[cls.__module__]
    specs: dict[str, ParamSpec] = {}
    for name, annotation in cls.__annotations__.items():
        if name in _CLIENT_OPTIONS:
            continue
        text = _annotation_text(annotation)
        literal = _LITERAL.search(text)
        choices = tuple(ast.literal_eval(f"[{literal.group(1)}]")) if literal else None
        nested_names = [found for found in _NESTED.findall(text) if hasattr(module, found)]
        nested = _spec_of(getattr(module, nested_names[0])) if nested_names else None
        rest = _NESTED.sub("", text).replace("NotRequired", "")
        scalar_allowed = nested is None or bool(re.search(r"\|\s*(int|str)\b", rest))
        specs[name] = ParamSpec(
            choices=choices,
            nested=nested,
            scalar_allowed=scalar_allowed,
            boolean=re.search(r"\bbool\b", text) is not None,
        )
    return specs


def _unknown(name: str) -> StripeApiError:
    return StripeApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f", or {choices[-1]}" if len(choices) > 1 else choices[0]


def check_params(
    class_name: str, params: dict[str, Any], *, implemented: frozenset[str] | None = None, prefix: str = ""
) -> None:
    """Refuse the parameters `class_name` does not define, enum values it does not list, malformed booleans.

    `implemented`: the top-level parameters the emulator acts on; others Stripe knows are refused as unsupported.
    """
    _check(params_of(class_name), params, implemented=implemented, prefix=prefix)


def _check(
    specs: dict[str, ParamSpec], params: dict[str, Any], *, implemented: frozenset[str] | None, prefix: str
) -> None:
    for name, value in params.items():
        full = f"{prefix}[{name}]" if prefix else name
        spec = specs.get(name)
        if spec is None:
            raise _unknown(full)
        if implemented is not None and name not in implemented:
            raise invalid(
                f"The parameter {full} is valid for Stripe but this emulator does not implement it: it refuses the "
                "request rather than answer it as if the parameter were absent.",
                param=full,
            )
        if isinstance(value, dict):
            if spec.nested is None:
                raise invalid(f"Invalid {full}: expected a string, not a hash", param=full)
            _check(spec.nested, value, implemented=None, prefix=full)
            continue
        if isinstance(value, list):
            continue  # arrays (`expand`, `types`): their items are checked by the endpoint
        if not spec.scalar_allowed:
            raise invalid(f"Invalid {full}: expected a hash", param=full)
        if spec.boolean and value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", param=full)
        if spec.choices is not None and value not in spec.choices:
            raise invalid(f"Invalid {full}: must be one of {_one_of(spec.choices)}", param=full)
