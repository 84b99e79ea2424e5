"""emulator_kit: the small HTTP toolkit both API emulators (ChartMogul, Stripe) are built on.

Dependency-free (stdlib `http.server`) except TLS, which generates a self-signed certificate with
`cryptography`.

Building an emulator::

    from localdev.emulator_kit import EmulatorServer, ErrorHooks, Router, ServerSettings, json_response

    router = Router()

    @router.route("GET", "/v1/things/{uuid}")
    def get_thing(request):                   # request: Request
        return json_response(200, {"uuid": request.params["uuid"]})

    server = EmulatorServer(
        router,
        errors=ErrorHooks(rate_limited=lambda: json_response(429, {...})),   # your API's error bodies
        before_request=check_auth,            # (Request) -> Response | None; None lets the request through
        dump_state=store.dump, reset_state=store.reset,   # for /_admin/state and /_admin/reset
        settings=ServerSettings(rate_limit=40, max_connections=20, faults="500:0.05", seed=1, tls=False),
    )
    with server:                              # start() on a free loopback port, stop() on exit
        requests.get(server.base_url + "/v1/things/x")

Pieces:

- `Request`: `method`, `path`, `query` (dict of lists), `headers` (lower-case keys), `body` (bytes),
  `params` (route `{name}` parts), `route` (matched route name, e.g. `"GET /v1/things/{uuid}"`), `json()`
  (raises `MalformedJSON`, which the server turns into `ErrorHooks.malformed_json`), `form()` (url-encoded
  body as a dict of lists), `query_one(name)`, `header(name)`.
- `Response(status, body, headers)`; helpers `json_response`, `text_response`, `empty_response`.
- `Router`: `add(method, pattern, handler)` or `@route(method, pattern)`; first registered match wins,
  a path known only under other methods gives `ErrorHooks.method_not_allowed`, an unknown one `not_found`.
- `EmulatorServer`: `start() -> base_url` (daemon thread, so a forgotten server never blocks exit),
  `serve_forever(on_ready=None)` (blocking, for a command line), `stop()`, context manager, `base_url`, `port`,
  `ca_cert_path` (TLS: the PEM to trust, e.g. `REQUESTS_CA_BUNDLE`), `counter` (`RequestCounter`),
  `request_report()`, `set_faults(spec, seed)`, `set_rate_limit(rate, burst)`, `set_route_rate_limit(rate, burst)`,
  `set_max_connections(n)`, `set_retry_after(bool)`, `set_latency(seconds)`, `reset()`.
- Order per request: admin prefix → parallel-request cap (`too_many_connections`, and the connection is
  closed)
  → token buckets, the global one and, if on, the matched route's (`rate_limited`; a token from both or from
  neither: a request refused by one is refused once and spends nothing of the other)
  → seeded fault (`fault(status)`, or `timeout`: hold `fault_hold_seconds` then close, or `reset`: TCP RST, no
  answer) → `before_request` → route handler.
  An exception in a handler answers `internal_error` (500) and is logged.
- `ServerSettings`: `host` (default 127.0.0.1), `port` (0 = free port), `tls`, `rate_limit` (req/s, None =
  off), `burst`, `route_rate_limit` (req/s for each route template, e.g. `GET /v1/things/{uuid}` whatever the uuid,
  besides the global limit; None = off), `route_burst`, `max_connections` (connections with a request in
  progress, None = off), `retry_after`, `faults`, `seed`,
  `fault_hold_seconds`, `idle_timeout_seconds`, `latency_seconds` (added to every API request before its
  answer, holding its connection slot), `admin_prefix` (`/_admin`), `log_requests`.
- Admin endpoints (never rate-limited, faulted or counted): `GET {prefix}/requests` (counts by route and
  status), `DELETE {prefix}/requests`, `POST {prefix}/reset` (state + counters), `GET {prefix}/state`,
  `GET|PUT {prefix}/faults` `{"spec": "...", "seed": 1, "hold_seconds": 2}`,
  `GET|PUT {prefix}/rate-limit`
  `{"rate": 40, "burst": 40, "route_rate": null, "route_burst": null, "max_connections": 20, "retry_after": false,
  "latency_ms": 0}`;
  an emulator can add its own through `admin_router`.
- `parse_fault_spec("429:0.1,500:0.05,timeout:0.02,reset:0.01")`, `FaultInjector`, `TokenBucket`,
  `RouteBuckets`, `try_acquire_all`, `ConnectionCap`, `RequestCounter`, `generate_self_signed()` are usable on
  their own.
- `localdev.emulator_kit.cli` (click, so not imported here): `host_option` and `faults_option(example)`, the
  options every emulator's `cmsync emulate ...` command shares; a bad fault spec is refused while parsing.
"""

from localdev.emulator_kit.counters import RequestCounter
from localdev.emulator_kit.faults import (
    RESET,
    TIMEOUT,
    Fault,
    FaultInjector,
    FaultSpecError,
    parse_fault_spec,
)
from localdev.emulator_kit.http import (
    MalformedJSON,
    Request,
    Response,
    empty_response,
    json_response,
    text_response,
)
from localdev.emulator_kit.limits import ConnectionCap, RouteBuckets, TokenBucket, try_acquire_all
from localdev.emulator_kit.routing import Route, Router
from localdev.emulator_kit.server import UNMATCHED_ROUTE, EmulatorServer, ErrorHooks, ServerSettings
from localdev.emulator_kit.tls import CertificateFiles, generate_self_signed

__all__ = [
    "RESET",
    "TIMEOUT",
    "UNMATCHED_ROUTE",
    "CertificateFiles",
    "ConnectionCap",
    "EmulatorServer",
    "ErrorHooks",
    "Fault",
    "FaultInjector",
    "FaultSpecError",
    "MalformedJSON",
    "Request",
    "RequestCounter",
    "Response",
    "Route",
    "RouteBuckets",
    "Router",
    "ServerSettings",
    "TokenBucket",
    "empty_response",
    "generate_self_signed",
    "json_response",
    "parse_fault_spec",
    "text_response",
    "try_acquire_all",
]
