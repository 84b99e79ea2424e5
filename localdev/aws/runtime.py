"""The local runtime: the stack `template.yaml` declares, in moto, with its functions run in-process.

    with local_stack(backend="in-process", options=PollerOptions(wait_for_batching_window=False)) as stack:
        stack.put_secret_value("StripeApiKeySecret", "sk_test_...")
        stack.invoke("ExportFunction", load_event("backfill.json"))   # a direct invocation
        report = stack.drain()                                          # run the SQS triggers until idle
        stack.receive_all("BadRecordsQueue")

Three moto backends (docs/sources.md#aws-moto): "in-process" (`mock_aws`), "server" (a `ThreadedMotoServer` on
127.0.0.1 at a free port, in this process) and "process" (that server in a child OS process,
localdev/aws/moto_process.py, so moto's work does not compete with the functions' threads for this interpreter).
The last two are reached through AWS_ENDPOINT_URL, which every boto3 client a handler creates picks up. Lambda
itself is not emulated by moto (docs/sources.md#aws-moto): the functions are the real handler modules from each
CodeUri, called with Lambda's event and context shapes (docs/sources.md#aws-local-poller).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3

from localdev.aws import moto_fixes
from localdev.aws.functions import ExecutionEnvironment, Invocation, LocalFunction
from localdev.aws.intrinsics import StackValues
from localdev.aws.lambda_model import Handler, patched_environ
from localdev.aws.moto_process import start_moto_process
from localdev.aws.poller import BatchOutcome, PollerOptions, SqsEventSourcePoller
from localdev.aws.resources import (
    ACCOUNT_ID,
    AwsClients,
    create_stack_resources,
    parameter_values,
    physical_name,
)
from localdev.aws.template import DEFAULT_TEMPLATE, LAYER_TYPE, REPO_ROOT, Template

logger = logging.getLogger(__name__)

Backend = Literal["in-process", "server", "process"]
BACKENDS: tuple[Backend, ...] = ("in-process", "server", "process")
EVENTS_DIR = REPO_ROOT / "events"
DEFAULT_STACK_NAME = "chartmogul-sync-local"
DEFAULT_REGION = "us-east-1"
# Lambda's default for asynchronous invocations without an EventInvokeConfig.
DEFAULT_ASYNC_RETRY_ATTEMPTS = 2
_IDLE_PAUSE_SECONDS = 0.05
# A queue found empty is asked again no sooner than this, or than an invocation's end (a concurrent drain looks for
# work every _IDLE_PAUSE_SECONDS, each look a GetQueueAttributes per idle function); one with messages, at every look.
_EMPTY_QUEUE_RECHECK_SECONDS = 0.25


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return event


class DrainIncompleteError(RuntimeError):
    def __init__(self, message: str, report: DrainReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class AsyncOutcome:
    function: str
    event: dict[str, Any]
    attempts: int
    error: str | None  # None when an attempt succeeded
    response: Any = field(default=None, repr=False)  # what the successful attempt returned


@dataclass
class DrainReport:
    batches: list[BatchOutcome] = field(default_factory=list)
    async_invocations: list[AsyncOutcome] = field(default_factory=list)
    rounds: int = 0

    def batches_of(self, function: str) -> list[BatchOutcome]:
        return [b for b in self.batches if b.function == function]


@dataclass(frozen=True)
class _DrainBounds:
    max_batches: int
    deadline: float  # time.monotonic()


def _warm_up_boto3(region: str, endpoint_url: str | None) -> None:
    """Create one client of each service a handler uses before threads start: boto3's default session builds
    its shared components lazily on the first client, and that is not thread-safe (boto3 docs, "Multithreading
    or multiprocessing with clients")."""
    for service in ("sqs", "s3", "secretsmanager", "lambda", "cloudwatch", "events"):
        boto3.client(service, region_name=region, endpoint_url=endpoint_url)
    boto3.resource("dynamodb", region_name=region, endpoint_url=endpoint_url)


@dataclass
class _PendingAsync:
    function: LocalFunction
    event: dict[str, Any]
    attempts: int = 0


class LocalStack:
    """A created stack: resource names, the functions, one poller per SQS event source."""

    def __init__(
        self,
        template: Template,
        clients: AwsClients,
        values: StackValues,
        *,
        stack_name: str,
        region: str,
        endpoint_url: str | None,
        options: PollerOptions,
        extra_environment: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.clients = clients
        self.values = values
        self.stack_name = stack_name
        self.region = region
        self.endpoint_url = endpoint_url
        self.moto_pid: int | None = None  # moto's own process, with the "process" backend (its CPU, for figures)
        self._found_empty: dict[str, float] = {}  # queue → when a drain last found it empty (`_visible_messages`)
        self.options = options
        self._add_layers_to_path()
        self.functions = {lid: self._local_function(lid) for lid in template.functions}
        self.add_environment(extra_environment or {})
        self.pollers = [
            SqsEventSourcePoller(
                sqs=clients.sqs,
                function=function,
                source=source,
                queue_url=self.queue_url(source.queue),
                queue_arn=self.queue_arn(source.queue),
                region=region,
                options=options,
            )
            for function in self.functions.values()
            for source in function.spec.sqs_events
        ]
        # Functions whose SQS event source mappings are disabled, as `UpdateEventSourceMapping(Enabled=False)` leaves
        # them (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateEventSourceMapping.html): their queues keep
        # their messages, and a drain neither polls nor waits for them (`set_event_sources_enabled`).
        self.disabled_event_sources: set[str] = set()
        self._pending_async: list[_PendingAsync] = []
        self._async_lock = threading.Lock()
        # Warm execution environments, kept between drains as Lambda keeps them between invocations.
        self._environments: dict[str, list[ExecutionEnvironment]] = {}
        self._boto3_warm = False

    # ------------------------------------------------------------------ names of what was created
    def queue_url(self, logical_id: str) -> str:
        return self.values.attributes[(logical_id, "QueueUrl")]

    def queue_arn(self, logical_id: str) -> str:
        return self.values.attributes[(logical_id, "Arn")]

    def resource_name(self, logical_id: str) -> str:
        """What `!Ref` returns: a table or bucket name, a queue URL, a secret ARN."""
        return self.values.refs[logical_id]

    @property
    def environment(self) -> dict[str, str]:
        """The environment shared by all functions (the template's Globals), e.g. for a command line."""
        shared: dict[str, str] | None = None
        for function in self.functions.values():
            env = function.environment
            shared = dict(env) if shared is None else {k: v for k, v in shared.items() if env.get(k) == v}
        return shared or {}

    def function(self, name: str) -> LocalFunction:
        """A function by logical id (ExportFunction), name (chartmogul-sync-local-export) or ARN, qualified or
        not (what a handler finds in context.invoked_function_arn)."""
        for logical_id, function in self.functions.items():
            if name in (logical_id, function.name, function.arn) or name.startswith(f"{function.arn}:"):
                return function
        raise KeyError(f"no function {name!r}; have {sorted(self.functions)}")

    # ------------------------------------------------------------------ driving the stack
    def add_environment(self, variables: Mapping[str, str]) -> None:
        """Add variables to every function's environment, e.g. STRIPE_API_BASE / CHARTMOGUL_API_URL pointing
        at the emulators; takes effect like a redeploy (cached settings are dropped)."""
        for function in self.functions.values():
            function.environment.update(variables)
        forget_cached_settings()

    def use_handler(self, function: str, handler: Handler) -> None:
        """Run `handler` instead of the function's CodeUri handler (tests). One handler object then serves every
        concurrent environment: it must be thread-safe (see `wrap_handler` for the real handler with a twist)."""
        self.function(function).replace_handler(handler)
        self._environments.clear()

    def wrap_handler(self, function: str, wrapper: Callable[[Handler], Handler]) -> None:
        """Run the function's real handler through `wrapper`, in every execution environment (tests)."""
        self.function(function).wrap_handler(wrapper)
        self._environments.clear()

    def put_secret_value(self, secret: str, value: str) -> None:
        """Give a template secret (logical id or name) its value, as an operator does after deploying."""
        secret_id = self.values.refs.get(secret, secret)
        self.clients.secretsmanager.put_secret_value(SecretId=secret_id, SecretString=value)

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """A synchronous (RequestResponse) invocation; the handler's exception propagates."""
        invocation = self.function(function).invoke(event)
        if invocation.error is not None:
            raise invocation.error
        if invocation.timed_out:
            raise TimeoutError(f"{function} ran past its {self.function(function).spec.timeout} s Timeout")
        return invocation.response

    def invoke_async(self, function: str, event: dict[str, Any]) -> None:
        """An asynchronous (Event) invocation, run by `drain` with Lambda's retries and on-failure destination."""
        self._queue_async(_PendingAsync(self.function(function), event))

    def send(self, queue: str, body: str, **kwargs: Any) -> str:
        """Send one message to a template queue (logical id); returns its MessageId."""
        result = self.clients.sqs.send_message(QueueUrl=self.queue_url(queue), MessageBody=body, **kwargs)
        return str(result["MessageId"])

    def receive_all(self, queue: str, max_messages: int = 1000) -> list[dict[str, Any]]:
        """Every visible message of a queue (up to max_messages); they stay in flight for its visibility timeout."""
        messages: list[dict[str, Any]] = []
        while len(messages) < max_messages:
            batch = self.clients.sqs.receive_message(
                QueueUrl=self.queue_url(queue),
                MaxNumberOfMessages=min(10, max_messages - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            messages.extend(batch)
        return messages

    def queue_depth(self, queue: str) -> int:
        """Messages in a queue: visible, in flight and delayed."""
        attributes = self.clients.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(queue),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def drain(
        self,
        *,
        max_batches: int = 1000,
        timeout_seconds: float = 60.0,
        on_batch: Callable[[BatchOutcome], None] | None = None,
    ) -> DrainReport:
        """Run pending async invocations and every SQS trigger until all consumed queues are empty.

        Bounded by `max_batches` invocations and `timeout_seconds`; raises DrainIncompleteError at a bound, so
        a stuck pipeline fails loudly. With `failed_record_visibility_timeout=None` a failed record stays in
        flight for the queue's visibility timeout, and draining waits for it (up to the bounds). `on_batch` is
        called after every batch (the demo's progress bar), on the calling thread.

        With `PollerOptions.concurrent` (the default) each SQS-triggered function runs up to its Lambda
        concurrency of batches at once, in threads, each in its own execution environment; off, one batch at a
        time, functions in turn.
        """
        report = DrainReport()
        if self.options.concurrent:
            with patched_environ(self.environment):
                self._prepare_environments()  # before the clock starts: set-up, not the drain's work
                bounds = _DrainBounds(max_batches, time.monotonic() + timeout_seconds)
                self._drain_concurrently(report, bounds, on_batch)
            return report
        bounds = _DrainBounds(max_batches, time.monotonic() + timeout_seconds)
        consumed_queues = self._consumed_queues
        while self._pending_async or any(self.queue_depth(q) for q in consumed_queues):
            self._check_bounds(report, bounds)
            report.rounds += 1
            progressed = self._run_pending_async(report)
            for poller in self._enabled_pollers:
                outcome = poller.poll_once()
                if outcome is not None:
                    report.batches.append(outcome)
                    progressed = True
                    if on_batch is not None:
                        on_batch(outcome)
            if not progressed:  # only in-flight messages left: wait for their visibility timeout
                time.sleep(_IDLE_PAUSE_SECONDS)
        return report

    def concurrency_of(self, poller: SqsEventSourcePoller) -> int:
        """How many invocations of the poller's function Lambda would run at once for this event source."""
        limit = self.values.resolve(poller.source.maximum_concurrency)
        if limit is None:
            limit = self.values.resolve(poller.function.spec.properties.get("ReservedConcurrentExecutions"))
        return max(1, int(limit)) if limit is not None else self.options.default_concurrency

    def _drain_concurrently(
        self, report: DrainReport, bounds: _DrainBounds, on_batch: Callable[[BatchOutcome], None] | None
    ) -> None:
        """Like Lambda: every poller keeps up to its function's concurrency of batches in flight at once, and
        asynchronous invocations run beside them, each invocation in an execution environment of its own."""
        free = self._environments  # every environment is free between drains
        async_slots = {
            f: self._function_concurrency(f) for f in {i.function.spec.logical_id for i in self._pending_async}
        }
        workers = sum(len(e) for e in free.values()) + sum(async_slots.values()) + self.options.default_concurrency
        running: dict[Future[Any], tuple[str, ExecutionEnvironment, _PendingAsync | None]] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda") as pool:
            try:
                while True:
                    self._check_bounds(report, bounds, running=len(running))
                    report.rounds += 1
                    for item in self._take_pending_async():
                        slot = f"async-{item.function.spec.logical_id}"
                        if slot not in free:
                            count = self._function_concurrency(item.function.spec.logical_id)
                            free[slot] = [item.function.execution_environment(100 + e) for e in range(count)]
                        if not free[slot] or self._at_reserved_concurrency(item.function, running):
                            self._queue_async(item)  # every environment of the function is busy: later
                            continue
                        environment = free[slot].pop()
                        item.attempts += 1
                        running[pool.submit(environment.invoke, item.event)] = (slot, environment, item)
                    for index, poller in enumerate(self.pollers):
                        slot = f"poller-{index}"
                        if poller.function.spec.logical_id in self.disabled_event_sources:
                            continue
                        if free[slot] and (poller.has_carried_messages or self._visible_messages(poller.source.queue)):
                            if self._at_reserved_concurrency(poller.function, running):
                                throttled = poller.throttle_once()  # no handler runs: its batch goes back
                                if throttled is not None:
                                    report.batches.append(throttled)
                                continue
                            environment = free[slot].pop()
                            running[pool.submit(poller.poll_once, environment)] = (slot, environment, None)
                    if not running:
                        if not self._pending_async and not any(self.queue_depth(q) for q in self._consumed_queues):
                            return
                        time.sleep(_IDLE_PAUSE_SECONDS)  # only in-flight messages left: wait for their visibility
                        continue
                    done, _ = wait(running, timeout=_IDLE_PAUSE_SECONDS, return_when=FIRST_COMPLETED)
                    if done:
                        self._found_empty.clear()  # what just ended may have sent messages on: look again now
                    for future in done:
                        slot, environment, invoked = running.pop(future)
                        free[slot].append(environment)
                        outcome = future.result()  # a poller's own failure (not the handler's) stops the drain
                        if invoked is not None:
                            self._settle_async(invoked, outcome, report)
                        elif outcome is not None:
                            report.batches.append(outcome)
                            if on_batch is not None:
                                on_batch(outcome)
            finally:
                wait(running)  # in-flight invocations end before the stack may be torn down

    def _prepare_environments(self) -> None:
        if not self._boto3_warm:
            _warm_up_boto3(self.region, self.endpoint_url)
            self._boto3_warm = True
        for index, poller in enumerate(self.pollers):
            if f"poller-{index}" not in self._environments:
                count = self.concurrency_of(poller)
                self._environments[f"poller-{index}"] = [poller.function.execution_environment(e) for e in range(count)]

    def _at_reserved_concurrency(self, function: LocalFunction, running: Mapping[Any, tuple[str, Any, Any]]) -> bool:
        """Whether the function's in-flight invocations, of every trigger, fill its ReservedConcurrentExecutions:
        Lambda throttles the next one (an asynchronous one waits and is retried; an SQS batch goes back)."""
        reserved = self.values.resolve(function.spec.properties.get("ReservedConcurrentExecutions"))
        if reserved is None:
            return False
        in_flight = sum(1 for _, environment, _ in running.values() if environment.function is function)
        return in_flight >= int(reserved)

    def _function_concurrency(self, logical_id: str) -> int:
        reserved = self.values.resolve(self.function(logical_id).spec.properties.get("ReservedConcurrentExecutions"))
        return max(1, int(reserved)) if reserved is not None else self.options.default_concurrency

    def set_event_sources_enabled(self, function: str, enabled: bool) -> None:
        """Enable or disable a function's SQS triggers between drains (a benchmark holds the uploads back until
        every bundle is queued, to measure the upload alone)."""
        if function not in self.functions:
            raise KeyError(f"no function {function} in the template")
        (self.disabled_event_sources.discard if enabled else self.disabled_event_sources.add)(function)

    @property
    def _enabled_pollers(self) -> list[SqsEventSourcePoller]:
        return [p for p in self.pollers if p.function.spec.logical_id not in self.disabled_event_sources]

    @property
    def _consumed_queues(self) -> list[str]:
        return sorted({p.source.queue for p in self._enabled_pollers})

    def _visible_messages(self, queue: str) -> int:
        empty_since = self._found_empty.get(queue)
        if empty_since is not None and time.monotonic() - empty_since < _EMPTY_QUEUE_RECHECK_SECONDS:
            return 0
        attributes = self.clients.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(queue), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        visible = int(attributes["ApproximateNumberOfMessages"])
        if visible:
            self._found_empty.pop(queue, None)
        else:
            self._found_empty[queue] = time.monotonic()
        return visible

    def _check_bounds(self, report: DrainReport, bounds: _DrainBounds, running: int = 0) -> None:
        invocations = len(report.batches) + len(report.async_invocations) + running
        if invocations >= bounds.max_batches or time.monotonic() > bounds.deadline:
            depths = {q: self.queue_depth(q) for q in self._consumed_queues}
            raise DrainIncompleteError(
                f"drain stopped after {invocations} invocations; queue depths {depths}, "
                f"{len(self._pending_async)} async invocations pending",
                report,
            )

    # ------------------------------------------------------------------ internals
    def _run_pending_async(self, report: DrainReport) -> bool:
        pending = self._take_pending_async()
        for item in pending:
            item.attempts += 1
            self._settle_async(item, item.function.invoke(item.event), report)
        return bool(pending)

    def _take_pending_async(self) -> list[_PendingAsync]:
        with self._async_lock:
            pending, self._pending_async = self._pending_async, []
        return pending

    def _queue_async(self, item: _PendingAsync) -> None:
        # Handlers queue invocations too (an export's continuation), from the threads they run in.
        with self._async_lock:
            self._pending_async.append(item)

    def _settle_async(self, item: _PendingAsync, invocation: Invocation, report: DrainReport) -> None:
        """After one attempt: done, retried (Lambda's MaximumRetryAttempts), or sent to the on-failure destination."""
        function = item.function.spec.logical_id
        if not invocation.failed:
            report.async_invocations.append(
                AsyncOutcome(function, item.event, item.attempts, None, invocation.response)
            )
            return
        error = "Task timed out" if invocation.timed_out else repr(invocation.error)
        config = item.function.spec.properties.get("EventInvokeConfig", {})
        retries = int(config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRY_ATTEMPTS))
        # Lambda retries a failed async invocation after 1 and 2 minutes; locally the retry is immediate.
        if item.attempts <= retries:
            self._queue_async(item)
            return
        report.async_invocations.append(AsyncOutcome(function, item.event, item.attempts, error))
        self._send_to_on_failure_destination(item, invocation.error, config)

    def _send_to_on_failure_destination(
        self, item: _PendingAsync, error: Exception | None, config: Mapping[str, Any]
    ) -> None:
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination is None:
            logger.error("async invocation of %s failed and has no on-failure destination", item.function.name)
            return
        destination_arn = self.values.resolve(destination)
        queue = next(q for q in self.template.queues if self.queue_arn(q) == destination_arn)
        # Lambda's invocation record (Lambda developer guide, "Capturing records of asynchronous invocations").
        record = {
            "version": "1.0",
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{item.function.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": item.attempts,
            },
            "requestPayload": item.event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {
                "errorMessage": str(error) if error else "Task timed out",
                "errorType": type(error).__name__ if error else "TimeoutError",
            },
        }
        self.send(queue, json.dumps(record))

    def _local_function(self, logical_id: str) -> LocalFunction:
        spec = self.template.functions[logical_id]
        name = self.values.resolve(spec.properties.get("FunctionName")) or physical_name(
            self.stack_name, logical_id, 64
        )
        arn = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}"
        self.values.refs[logical_id] = name
        self.values.attributes[(logical_id, "Arn")] = arn
        environment = {key: str(value) for key, value in self.values.resolve(spec.environment).items()}
        # Variables Lambda sets itself, plus Tracer off: there is no X-Ray daemon locally.
        environment.update(
            {
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        return LocalFunction(spec, name, arn, environment)

    def _add_layers_to_path(self) -> None:
        # In Lambda the layer's content is on sys.path (/opt/python); here its ContentUri is.
        for layer in self.template.other_resources(LAYER_TYPE).values():
            content = str((self.template.base_dir / str(layer.properties["ContentUri"])).resolve())
            if content not in sys.path:
                sys.path.append(content)


# ---------------------------------------------------------------------------------------------- backends
_AWS_TEST_ENVIRONMENT = {
    # Fake credentials: nothing this process sends can reach a real account.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_PROFILE": None,
}


@dataclass(frozen=True)
class MotoEndpoint:
    url: str | None  # None: in-process (`mock_aws`), no endpoint
    pid: int | None = None  # moto's own process ("process" backend); None: this process


@contextmanager
def moto_backend(backend: Backend, region: str) -> Iterator[MotoEndpoint]:
    """Start moto and yield where it answers. Stops it, and restores the environment, on exit.

    Every backend starts from a clean account and leaves none behind."""
    environment: dict[str, str | None] = {**_AWS_TEST_ENVIRONMENT, "AWS_DEFAULT_REGION": region, "AWS_REGION": region}
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "process":
        # A new child process holds no state (a clean account) and installs moto_fixes itself.
        with start_moto_process() as moto, patched_environ({**environment, "AWS_ENDPOINT_URL": moto.endpoint_url}):
            yield MotoEndpoint(moto.endpoint_url, moto.pid)
        return
    # The concurrent invocations are threads calling moto, which takes no locks and has costs quadratic in a
    # backfill's size: moto_fixes.py gives it the services' thread-safety and linear costs, its answers unchanged.
    moto_fixes.install()
    if backend == "in-process":
        from moto import mock_aws

        with patched_environ({**environment, "AWS_ENDPOINT_URL": None}), mock_aws():
            yield MotoEndpoint(None)
        return
    from moto.server import ThreadedMotoServer

    # The server's werkzeug logs one INFO line per request; keep the demo's and tests' logs readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        # The server shares moto's in-process state: start from a clean account (moto docs, server_mode.rst).
        _reset_moto_server(endpoint_url)
        with patched_environ({**environment, "AWS_ENDPOINT_URL": endpoint_url}):
            yield MotoEndpoint(endpoint_url)
        _reset_moto_server(endpoint_url)
    finally:
        server.stop()


def _reset_moto_server(endpoint_url: str) -> None:
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@contextmanager
def local_stack(
    template: Template | Path = DEFAULT_TEMPLATE,
    *,
    backend: Backend = "in-process",
    stack_name: str = DEFAULT_STACK_NAME,
    region: str = DEFAULT_REGION,
    parameters: Mapping[str, str] | None = None,
    options: PollerOptions | None = None,
    handlers: Mapping[str, Handler] | None = None,
    environment: Mapping[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Create the template's stack in moto and yield it; everything is torn down on exit.

    `parameters` override template parameter defaults; `handlers` replace CodeUri handlers by function logical
    id; `environment` is added to every function's environment (e.g. the emulators' URLs).
    """
    parsed = template if isinstance(template, Template) else Template.load(template)
    # Only the resources these parameter values deploy (e.g. the Stripe events queue needs its parameter).
    parameter_settings = parameter_values(parsed, parameters or {})
    parsed = parsed.with_conditions(parameter_settings)
    with ExitStack() as cleanup:
        moto = cleanup.enter_context(moto_backend(backend, region))
        endpoint_url = moto.url
        clients = AwsClients(boto3.session.Session(), endpoint_url, region)
        values = create_stack_resources(parsed, clients, stack_name, region, parameter_settings)
        stack = LocalStack(
            parsed,
            clients,
            values,
            stack_name=stack_name,
            region=region,
            endpoint_url=endpoint_url,
            options=options or PollerOptions(),
            extra_environment=environment,
        )
        stack.moto_pid = moto.pid
        cleanup.callback(forget_cached_settings)
        for function, handler in (handlers or {}).items():
            stack.use_handler(function, handler)
        yield stack


def forget_cached_settings() -> None:
    """Drop `chartmogul_sync.config.get_settings`' cache, if it has been imported.

    It reads the environment once per process, as once per Lambda execution environment. In-process a new
    local stack (new queue URLs, another moto endpoint) is a new deployment, so the cache must not outlive it.
    """
    config = sys.modules.get("chartmogul_sync.config")
    cache_clear = getattr(getattr(config, "get_settings", None), "cache_clear", None)
    if callable(cache_clear):
        cache_clear()
