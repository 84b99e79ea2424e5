"""A template function made runnable in-process: its handler, environment, context and time limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from localdev.aws.lambda_model import Handler, LocalLambdaContext, load_handler, patched_environ
from localdev.aws.template import FunctionSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invocation:
    """How one invocation ended. Lambda reports an exception and a timeout the same way: a failed invoke."""

    response: Any
    error: Exception | None
    timed_out: bool

    @property
    def failed(self) -> bool:
        return self.error is not None or self.timed_out


class LocalFunction:
    def __init__(
        self,
        spec: FunctionSpec,
        name: str,
        arn: str,
        environment: Mapping[str, str],
        handler: Handler | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.arn = arn
        self.environment = dict(environment)
        self._handler = handler
        self._replaced = handler is not None  # a test's handler is shared by every environment
        self._wrapper: Callable[[Handler], Handler] | None = None

    @property
    def handler(self) -> Handler:
        if self._handler is None:
            self._handler = self._load_handler(self.spec.logical_id)
        return self._handler

    def replace_handler(self, handler: Handler) -> None:
        self._handler = handler
        self._replaced = True
        self._wrapper = None

    def wrap_handler(self, wrapper: Callable[[Handler], Handler]) -> None:
        """Run every environment's own handler through `wrapper` (tests: a crash after the real work)."""
        self._wrapper = wrapper
        self._handler = wrapper(self._handler or self._load_handler(self.spec.logical_id))

    def execution_environment(self, index: int) -> ExecutionEnvironment:
        """A separate warm instance of this function (see ExecutionEnvironment), loaded now."""
        if self._replaced:
            return ExecutionEnvironment(self, index, self.handler)
        handler = self._load_handler(f"{self.spec.logical_id}_env{index}")
        return ExecutionEnvironment(self, index, self._wrapper(handler) if self._wrapper else handler)

    def invoke(
        self, event: dict[str, Any], *, handler: Handler | None = None, patch_environment: bool = True
    ) -> Invocation:
        """One invocation. With `patch_environment` off the caller has set the process environment already
        (concurrent runs: os.environ is process-wide, so it is set once for all of them)."""
        context = LocalLambdaContext(self.name, self.arn, self.spec.memory_size, self.spec.timeout)
        handler = handler or self.handler
        started = time.monotonic()
        response: Any = None
        error: Exception | None = None
        with patched_environ(self.environment if patch_environment else {}):
            try:
                response = handler(event, context)
            except Exception as exc:  # a handler's exception is a failed invoke, as in Lambda
                logger.warning("%s raised %s: %s", self.spec.logical_id, type(exc).__name__, exc)
                error = exc
        # Lambda stops a run at its Timeout; in-process we cannot stop it, so a run that took longer counts
        # as timed out and its result is discarded, as Lambda would have.
        timed_out = time.monotonic() - started > self.spec.timeout
        if timed_out:
            logger.warning("%s ran past its %s s Timeout", self.spec.logical_id, self.spec.timeout)
        return Invocation(response=None if timed_out else response, error=error, timed_out=timed_out)

    def _load_handler(self, unique_prefix: str) -> Handler:
        # Imported inside the function's environment: Powertools reads POWERTOOLS_SERVICE_NAME and the like when
        # a handler module creates its Logger at import time. Each load gets its own Powertools metric store.
        with patched_environ(self.environment), _own_metrics_store():
            return load_handler(self.spec.code_dir, self.spec.handler, unique_prefix)


class ExecutionEnvironment:
    """One warm instance of a function, as Lambda keeps one per concurrent invocation.

    In Lambda every execution environment is its own process. Locally they are threads of one process, so each
    gets its own copy of the handler module (its module-level state: the batch processor, cached clients and
    services, the limiter's share) and its own Powertools metric store. One environment runs one invocation at
    a time; several environments of one function run at once.
    """

    def __init__(self, function: LocalFunction, index: int, handler: Handler) -> None:
        self.function = function
        self.index = index
        self._handler = handler

    def invoke(self, event: dict[str, Any], *, patch_environment: bool = False) -> Invocation:
        return self.function.invoke(event, handler=self._handler, patch_environment=patch_environment)


@contextmanager
def _own_metrics_store() -> Iterator[None]:
    """Powertools' `Metrics` keeps metrics, dimensions and metadata in class attributes shared by every instance
    in a process (aws_lambda_powertools/metrics/metrics.py). A handler module loaded inside this block creates
    its `Metrics` with fresh ones, so concurrent environments never flush or clear each other's metrics."""
    from aws_lambda_powertools.metrics import Metrics

    names = ("_metrics", "_dimensions", "_metadata", "_default_dimensions")
    saved = {name: getattr(Metrics, name) for name in names}
    for name in names:
        setattr(Metrics, name, {})
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(Metrics, name, value)
