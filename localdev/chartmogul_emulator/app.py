"""The ChartMogul Import API emulator: wires the handlers, auth and error bodies onto the emulator kit."""

from __future__ import annotations

import base64
import binascii

from localdev.chartmogul_emulator import (
    api_bulk,
    api_customers,
    api_events,
    api_invoices,
    api_metrics,
    api_plans,
    api_sources,
    responses,
)
from localdev.chartmogul_emulator.core import Emulator
from localdev.chartmogul_emulator.options import EmulatorOptions, parse_instant
from localdev.chartmogul_emulator.responses import APIProblem, schema_error
from localdev.chartmogul_emulator.validation import SchemaError
from localdev.child_process import process_figures
from localdev.emulator_kit import (
    EmulatorServer,
    ErrorHooks,
    Request,
    Response,
    Router,
    ServerSettings,
    json_response,
)
from localdev.emulator_kit.routing import Handler


def api_key_of(request: Request) -> str | None:
    """docs/sources.md#cm-transport: HTTP Basic with the API key as user name and an empty password."""
    header = request.header("authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, _password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user


class _TransactionalRouter(Router):
    """Every API handler runs as one store transaction; an exception (`APIProblem`, `SchemaError`, a bug)
    rolls it back, so a rejected request leaves nothing behind. Handlers that answer an error without
    raising have written nothing (the "partial" invoice mode relies on this to keep what it stored)."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__()
        self._emulator = emulator

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        store = self._emulator.store

        def run(request: Request) -> Response:
            try:
                with store.transaction():
                    return handler(request)
            except APIProblem as problem:
                return problem.response
            except SchemaError as exc:
                return schema_error(exc)

        super().add(method, pattern, run)


def build_router(emulator: Emulator) -> Router:
    router = _TransactionalRouter(emulator)
    for module in (api_sources, api_customers, api_plans, api_invoices, api_events, api_metrics, api_bulk):
        module.register(router, emulator)
    return router


def build_admin_router(emulator: Emulator, prefix: str = "/_admin") -> Router:
    """Admin endpoints of this emulator beside the kit's:
    - `GET|PUT /_admin/clock`: the emulator's "now" (customer MRR and status, "cancellation must be in the past"),
      so a caller in another process can move it as `options.now` moves it in-process. Body and answer:
      `{"now": "2026-02-01T00:00:00+00:00"}`; `null`: the real clock.
    - `GET /_admin/process`: `{"pid": ..., "cpu_seconds": ...}`, the CPU time of the process serving (what a
      benchmark with the emulator in a process of its own adds to its own)."""
    options = emulator.options

    def clock_view() -> dict[str, str | None]:
        return {"now": options.now.isoformat() if options.now is not None else None}

    def set_clock(request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or "now" not in body:
            return json_response(400, {"error": 'expected a JSON object {"now": "<ISO 8601 time>" or null}'})
        now = body["now"]
        if now is None:
            options.now = None
        elif isinstance(now, str):
            try:
                options.now = parse_instant(now)
            except ValueError as error:
                return json_response(400, {"error": f"now: {error}"})
        else:
            return json_response(400, {"error": f"now: expected an ISO 8601 string or null, got {now!r}"})
        return json_response(200, clock_view())

    admin = Router()
    admin.add("GET", f"{prefix}/clock", lambda request: json_response(200, clock_view()))
    admin.add("PUT", f"{prefix}/clock", set_clock)
    admin.add(
        "GET",
        f"{prefix}/process",
        lambda request: json_response(200, process_figures()),
    )
    return admin


def create_server(options: EmulatorOptions | None = None) -> tuple[EmulatorServer, Emulator]:
    """An emulator and its (not yet started) server, configured by `options`."""
    options = options or EmulatorOptions()
    emulator = Emulator(options)

    def authenticate(request: Request) -> Response | None:
        if api_key_of(request) != options.api_key:
            return responses.unauthorized()  # docs/sources.md#cm-transport (recorded 401 body)
        return None

    server = EmulatorServer(
        build_router(emulator),
        errors=ErrorHooks(
            rate_limited=responses.rate_limited,
            too_many_connections=responses.too_many_connections,
            fault=responses.injected_fault,
            not_found=responses.route_not_found,
            method_not_allowed=responses.method_not_allowed,
            malformed_json=responses.malformed_json,
            internal_error=responses.internal_error,
        ),
        before_request=authenticate,
        dump_state=emulator.store.dump,
        reset_state=emulator.store.reset,
        admin_router=build_admin_router(emulator),
        settings=ServerSettings(
            host=options.host,
            port=options.port,
            tls=options.tls,
            rate_limit=options.rate_limit,
            burst=options.burst,
            max_connections=options.max_connections,
            retry_after=options.retry_after,
            faults=options.faults,
            seed=options.seed,
            fault_hold_seconds=options.fault_hold_seconds,
            latency_seconds=options.latency_ms / 1000,
            log_requests=options.log_requests,
        ),
        name="chartmogul-emulator",
    )
    return server, emulator
