"""The emulator HTTP server: loopback listener, admission control, faults, counters and admin endpoints."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from localdev.emulator_kit.counters import RequestCounter
from localdev.emulator_kit.faults import RESET, TIMEOUT, FaultInjector, FaultSpecError
from localdev.emulator_kit.http import (
    MalformedJSON,
    Request,
    Response,
    empty_response,
    json_response,
    text_response,
)
from localdev.emulator_kit.limits import ConnectionCap, RouteBuckets, TokenBucket, try_acquire_all
from localdev.emulator_kit.routing import Router
from localdev.emulator_kit.tls import CertificateFiles, generate_self_signed

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"
MAX_BODY_BYTES = 64 * 1024 * 1024  # far above any API limit; only guards the emulator's memory


@dataclass
class ErrorHooks:
    """Error bodies the kit itself produces; each emulator supplies its API's shapes."""

    rate_limited: Callable[[], Response] = lambda: json_response(429, {"error": "rate limited"})
    too_many_connections: Callable[[], Response] = lambda: json_response(503, {"error": "too many connections"})
    fault: Callable[[int], Response] = lambda status: text_response(status, f"{status} injected fault")
    not_found: Callable[[Request], Response] = lambda request: json_response(404, {"error": "not found"})
    method_not_allowed: Callable[[Request], Response] = lambda request: json_response(
        405, {"error": "method not allowed"}
    )
    malformed_json: Callable[[Request, MalformedJSON], Response] = lambda request, exc: json_response(
        400, {"error": f"malformed JSON: {exc}"}
    )
    internal_error: Callable[[Request, BaseException], Response] = lambda request, exc: text_response(
        500, "500 Internal Server Error"
    )


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port chosen by the OS
    tls: bool = False
    rate_limit: float | None = None  # requests per second; None: off
    burst: float | None = None  # bucket size; None: equal to the rate (one second of requests)
    # A second limit per route (the route template: method + pattern, as `request_report()` groups), counted besides
    # the global one: requests/s for each route; None: off. For APIs that limit every operation on its own.
    route_rate_limit: float | None = None
    route_burst: float | None = None  # each route's bucket size; None: equal to `route_rate_limit`
    max_connections: int | None = None  # open connections; None: no cap
    retry_after: bool = False  # send Retry-After on 429/503
    faults: str = ""
    seed: int | None = None
    fault_hold_seconds: float = 30.0  # how long a `timeout` fault holds the request before closing
    idle_timeout_seconds: float = 30.0  # keep-alive connections idle longer than this are closed
    # Added to every API request before its answer is sent (0: none): what a client sees of network and server
    # time on the real API, so benchmarks measure concurrency under realistic round trips. The request keeps its
    # connection slot (ConnectionCap) meanwhile, as on the real API; the store is not held.
    latency_seconds: float = 0.0
    admin_prefix: str = "/_admin"
    log_requests: bool = False


class _Abort(Exception):
    """Internal: answer nothing and close (kind is TIMEOUT or RESET)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class _Outcome:
    response: Response | None = None
    abort: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


class EmulatorServer:
    """See the package docstring for the API."""

    def __init__(
        self,
        router: Router,
        *,
        errors: ErrorHooks | None = None,
        before_request: Callable[[Request], Response | None] | None = None,
        dump_state: Callable[[], Any] | None = None,
        reset_state: Callable[[], None] | None = None,
        admin_router: Router | None = None,
        settings: ServerSettings | None = None,
        name: str = "emulator",
    ) -> None:
        self.router = router
        self.errors = errors or ErrorHooks()
        self.before_request = before_request
        self.dump_state = dump_state
        self.reset_state = reset_state
        self.settings = settings or ServerSettings()
        self.name = name
        self.counter = RequestCounter()
        self.bucket = TokenBucket(self.settings.rate_limit, self.settings.burst)
        self.route_buckets = RouteBuckets(self.settings.route_rate_limit, self.settings.route_burst)
        self.connections = ConnectionCap(self.settings.max_connections)
        self.faults = FaultInjector(self.settings.faults, self.settings.seed)
        self.certificate: CertificateFiles | None = None
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving_in_caller = False  # serve_forever() runs in the caller's thread
        self._admin = self._build_admin_router(admin_router)

    # ---- lifecycle -------------------------------------------------------------------------------

    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            ssl_context: ssl.SSLContext | None = None
            if self.settings.tls:
                self.certificate = generate_self_signed()
                ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ssl_context.load_cert_chain(self.certificate.cert_path, self.certificate.key_path)
            self._httpd = _HTTPServer((self.settings.host, self.settings.port), self, ssl_context)
        return self._httpd

    def start(self) -> str:
        """Listen and serve in a daemon thread; returns the base URL (e.g. `http://127.0.0.1:40123`)."""
        httpd = self._bind()
        if self._thread is None:
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"{self.name}-server", daemon=True
            )
            self._thread.start()
        return self.base_url

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the calling thread until `stop()` or KeyboardInterrupt (the command line uses this).

        `on_ready(base_url)` is called once the socket listens (e.g. to print the URL).
        """
        httpd = self._bind()
        if on_ready is not None:
            on_ready(self.base_url)
        self._serving_in_caller = True
        try:
            httpd.serve_forever(poll_interval=0.2)
        finally:
            self._serving_in_caller = False
            self._close()

    def stop(self) -> None:
        """Stop serving; from any thread but the one inside `serve_forever()` (a timer, a signal handler's thread)."""
        self._stopping.set()  # releases requests held by `timeout` faults
        if self._httpd is not None and self._serving_in_caller:
            self._httpd.shutdown()  # serve_forever() returns and closes the socket itself
            return
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._close()

    def _close(self) -> None:
        if self._httpd is not None:
            self._httpd.server_close()
        self._httpd, self._thread = None, None
        if self.certificate is not None:  # the certificate was generated for this run only
            shutil.rmtree(self.certificate.cert_path.parent, ignore_errors=True)
            self.certificate = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not listening")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self.settings.tls else "http"
        host = self.settings.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def ca_cert_path(self) -> Path | None:
        """With TLS: the PEM file a client must trust (e.g. `REQUESTS_CA_BUNDLE`)."""
        return self.certificate.cert_path if self.certificate else None

    # ---- runtime configuration ---------------------------------------------------------------------

    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        """Raises `FaultSpecError` for a bad spec (the old spec stays)."""
        self.faults.configure(spec, seed)

    def set_rate_limit(self, rate: float | None, burst: float | None = None) -> None:
        self.bucket.configure(rate, burst)

    def set_route_rate_limit(self, rate: float | None, burst: float | None = None) -> None:
        """Each route's own limit (requests/s; None or 0: off), besides the global one; every route's bucket refills."""
        self.route_buckets.configure(rate, burst)

    def set_max_connections(self, limit: int | None) -> None:
        self.connections.configure(limit)

    def set_retry_after(self, enabled: bool) -> None:
        self.settings.retry_after = enabled

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"latency must not be negative, got {seconds}")
        self.settings.latency_seconds = seconds

    def reset(self) -> None:
        """Empty the emulator's state and the request counters; refill the rate buckets."""
        if self.reset_state is not None:
            self.reset_state()
        self.counter.reset()
        self.bucket.configure(self.bucket.rate, self.bucket.burst)
        self.route_buckets.configure(self.route_buckets.rate, self.route_buckets.burst)

    # ---- request pipeline ----------------------------------------------------------------------------

    def is_admin_path(self, path: str) -> bool:
        return path == self.settings.admin_prefix or path.startswith(self.settings.admin_prefix + "/")

    def handle(self, request: Request, admitted: bool) -> _Outcome:
        if self.is_admin_path(request.path):
            return _Outcome(self._dispatch(self._admin, request, count=False))
        match = self.router.match(request.method, request.path)
        request.route = match.route.name if match and match.route else UNMATCHED_ROUTE
        if not admitted:
            response = self.errors.too_many_connections()
            if self.settings.retry_after:
                response.headers["Retry-After"] = "1"
            self.counter.record(request.route, response.status)
            return _Outcome(response, extra_headers={"Connection": "close"})
        # The global limit and the route's (a path no route matches has none): a token from both or the request is
        # refused, once, spending neither.
        route_bucket = self.route_buckets.bucket(request.route) if match and match.route else None
        refusing = try_acquire_all(self.bucket, route_bucket) if route_bucket else try_acquire_all(self.bucket)
        if refusing is not None:
            response = self.errors.rate_limited()
            if self.settings.retry_after:
                response.headers["Retry-After"] = refusing.retry_after_header()
            self.counter.record(request.route, response.status)
            return _Outcome(response)
        fault = self.faults.draw()
        if fault is not None:
            if fault.status is None:
                self.counter.record(request.route, fault.kind)
                return _Outcome(abort=fault.kind)
            response = self.errors.fault(fault.status)
            if fault.status in (429, 503) and self.settings.retry_after:
                response.headers["Retry-After"] = "1"
            self.counter.record(request.route, response.status)
            return _Outcome(response)
        return _Outcome(self._dispatch(self.router, request, count=True))

    def _dispatch(self, router: Router, request: Request, count: bool) -> Response:
        match = router.match(request.method, request.path)
        try:
            # before_request (authentication) first, so an unknown path without credentials is a 401 too
            refused = self.before_request(request) if count and self.before_request else None
            if refused is not None:
                response = refused
            elif match is None:
                response = self.errors.not_found(request)
            elif match.route is None:
                response = self.errors.method_not_allowed(request)
            else:
                request.params = {k: urllib.parse.unquote(v) for k, v in match.params.items()}
                response = match.route.handler(request)
        except MalformedJSON as exc:
            response = self.errors.malformed_json(request, exc)
        except Exception as exc:  # an emulator bug must answer 500, not kill the connection thread
            logger.exception("%s: unhandled error in %s %s", self.name, request.method, request.path)
            response = self.errors.internal_error(request, exc)
        if count:
            self.counter.record(request.route, response.status)
        return response

    def hold_for_timeout(self) -> None:
        self._stopping.wait(self.settings.fault_hold_seconds)

    def add_latency(self) -> None:
        """Wait the configured latency (released at once when the server stops)."""
        if self.settings.latency_seconds > 0:
            self._stopping.wait(self.settings.latency_seconds)

    # ---- admin endpoints -----------------------------------------------------------------------------

    def _build_admin_router(self, extra: Router | None) -> Router:
        prefix = self.settings.admin_prefix
        admin = Router()
        admin.add("GET", f"{prefix}/requests", lambda r: json_response(200, self.request_report()))
        admin.add("DELETE", f"{prefix}/requests", self._admin_clear_counts)
        admin.add("POST", f"{prefix}/reset", self._admin_reset)
        admin.add("GET", f"{prefix}/state", self._admin_state)
        admin.add("GET", f"{prefix}/faults", lambda r: json_response(200, self._faults_view()))
        admin.add("PUT", f"{prefix}/faults", self._admin_set_faults)
        admin.add("POST", f"{prefix}/faults", self._admin_set_faults)
        admin.add("GET", f"{prefix}/rate-limit", lambda r: json_response(200, self._limits_view()))
        admin.add("PUT", f"{prefix}/rate-limit", self._admin_set_limits)
        admin.add("POST", f"{prefix}/rate-limit", self._admin_set_limits)
        for route in extra.routes if extra else []:
            admin.add(route.method, route.pattern, route.handler)
        return admin

    def request_report(self) -> dict[str, Any]:
        """Counts by route and status (`"timeout"` and `"reset"` count those injected faults), and by second."""
        return {
            "routes": self.counter.snapshot(),
            "total": self.counter.total(),
            "by_second": self.counter.by_second(),
            "requests_in_progress": self.connections.open,
            "peak_requests_in_progress": self.connections.peak,
        }

    def _admin_clear_counts(self, request: Request) -> Response:
        self.counter.reset()
        return empty_response(204)

    def _admin_reset(self, request: Request) -> Response:
        self.reset()
        return empty_response(204)

    def _admin_state(self, request: Request) -> Response:
        return json_response(200, self.dump_state() if self.dump_state else {})

    def _faults_view(self) -> dict[str, Any]:
        return {"spec": self.faults.spec, "seed": self.faults.seed, "hold_seconds": self.settings.fault_hold_seconds}

    def _limits_view(self) -> dict[str, Any]:
        return {
            "rate": self.bucket.rate,
            "burst": self.bucket.burst if self.bucket.rate is not None else None,
            "route_rate": self.route_buckets.rate,
            "route_burst": self.route_buckets.burst if self.route_buckets.rate is not None else None,
            "max_connections": self.connections.limit,
            "retry_after": self.settings.retry_after,
            "latency_ms": round(self.settings.latency_seconds * 1000, 3),
        }

    def _admin_set_faults(self, request: Request) -> Response:
        body = request.json() or {}
        if not isinstance(body, dict):
            return json_response(400, {"error": "expected a JSON object"})
        try:
            self.set_faults(body.get("spec"), body.get("seed"))
        except FaultSpecError as exc:
            return json_response(400, {"error": str(exc)})
        if "hold_seconds" in body:
            self.settings.fault_hold_seconds = float(body["hold_seconds"])
        return json_response(200, self._faults_view())

    def _admin_set_limits(self, request: Request) -> Response:
        """Body keys (each optional): `rate` (null: off), `burst`, `route_rate` (each route's, null: off),
        `route_burst`, `max_connections` (null: off), `retry_after`, `latency_ms` (0: none)."""
        body = request.json() or {}
        if not isinstance(body, dict):
            return json_response(400, {"error": "expected a JSON object"})
        for key in ("route_rate", "route_burst"):
            value = body.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                return json_response(400, {"error": f"{key} must be a number >= 0 or null, got {value!r}"})
        if "rate" in body or "burst" in body:
            self.set_rate_limit(body.get("rate", self.bucket.rate), body.get("burst"))
        if "route_rate" in body or "route_burst" in body:
            self.set_route_rate_limit(body.get("route_rate", self.route_buckets.rate), body.get("route_burst"))
        if "max_connections" in body:
            self.set_max_connections(body["max_connections"])
        if "retry_after" in body:
            self.set_retry_after(bool(body["retry_after"]))
        if "latency_ms" in body:
            latency = body["latency_ms"]
            if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
                return json_response(400, {"error": f"latency_ms must be a number >= 0, got {latency!r}"})
            self.set_latency(latency / 1000)
        return json_response(200, self._limits_view())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer, ssl_context: ssl.SSLContext | None) -> None:
        self.emulator = emulator
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address), daemon=True)
        thread.start()

    def _serve_connection(self, sock: socket.socket, client_address: Any) -> None:
        try:
            if self.ssl_context is not None:
                sock.settimeout(10)
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                sock.settimeout(None)
            _Handler(sock, client_address, self)
        except Exception:
            logger.debug("connection from %s ended with an error", client_address, exc_info=True)
        finally:
            self.shutdown_request(sock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the benchmark measures the emulator and not TCP setup
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.emulator.settings.idle_timeout_seconds)
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.settings.log_requests:
            logger.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(length_text) if length_text and length_text.isdigit() else 0
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _serve(self) -> None:
        emulator = self.server.emulator
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._write(text_response(413, "413 Request Entity Too Large"), {"Connection": "close"})
            return
        url = urllib.parse.urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=urllib.parse.parse_qs(url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        # Parallel connections are counted while a request is in progress on them (docs/sources.md#cm-rate-limits): an
        # idle keep-alive connection, or one whose client has hung up, never causes a spurious 503.
        counted = not emulator.is_admin_path(request.path)
        admitted = emulator.connections.enter() if counted else True
        try:
            outcome = emulator.handle(request, admitted)
            if counted:
                emulator.add_latency()
            if outcome.abort == TIMEOUT:
                emulator.hold_for_timeout()
                self.close_connection = True
                return
            if outcome.abort == RESET:
                self._reset_connection()
                return
            assert outcome.response is not None
            self._write(outcome.response, outcome.extra_headers)
        finally:
            if counted:
                emulator.connections.leave()

    def _write(self, response: Response, extra_headers: dict[str, str]) -> None:
        """Status line, headers and body in one send: separate small writes meet the client's delayed
        ACK and cost ~40 ms per request."""
        self.log_request(response.status)
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        headers = {
            "Server": self.version_string(),
            "Date": self.date_time_string(),
            **response.headers,
            **extra_headers,
            "Content-Length": str(len(response.body)),
        }
        if headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        head = f"{self.protocol_version} {response.status} {reason}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        body = response.body if self.command != "HEAD" else b""
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    def _reset_connection(self) -> None:
        """Close with a TCP RST and no answer: SO_LINGER on with a zero timeout."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
