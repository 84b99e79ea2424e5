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
from localdev.chartmogul_emulator.options import EmulatorOptions
from localdev.chartmogul_emulator.responses import APIProblem, schema_error
from localdev.chartmogul_emulator.validation import SchemaError
from localdev.emulator_kit import (
    EmulatorServer,
    ErrorHooks,
    Request,
    Response,
    Router,
    ServerSettings,
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
