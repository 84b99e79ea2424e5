"""A tiny router: HTTP method + path pattern with `{name}` segments → handler."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from localdev.emulator_kit.http import Request, Response

Handler = Callable[[Request], Response]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler

    @property
    def name(self) -> str:
        return f"{self.method} {self.pattern}"


@dataclass(frozen=True)
class RouteMatch:
    route: Route | None  # None: the path exists but not for this method (405)
    params: dict[str, str]


class Router:
    """Routes are tried in registration order; a `{name}` matches one path segment (no `/`)."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex_text = "".join(
            f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(_PARAM.split(pattern))
        )
        self._routes.append(Route(method.upper(), pattern, re.compile(f"^{regex_text}$"), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of `add`."""

        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for `method path`; a match with `route=None` if only other methods exist; else None."""
        path_exists = False
        for route in self._routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method.upper():
                return RouteMatch(route, found.groupdict())
            path_exists = True
        return RouteMatch(None, {}) if path_exists else None

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)
