"""A template function made runnable in-process: its handler, environment, context and time limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from localdev.lambda_model import Handler, LocalLambdaContext, load_handler, patched_environ
from localdev.template import FunctionSpec

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

    @property
    def handler(self) -> Handler:
        if self._handler is None:
            # Imported inside the function's environment: Powertools reads POWERTOOLS_SERVICE_NAME and the
            # like when a handler module creates its Logger at import time.
            with patched_environ(self.environment):
                self._handler = load_handler(self.spec.code_dir, self.spec.handler, self.spec.logical_id)
        return self._handler

    def replace_handler(self, handler: Handler) -> None:
        self._handler = handler

    def invoke(self, event: dict[str, Any]) -> Invocation:
        context = LocalLambdaContext(self.name, self.arn, self.spec.memory_size, self.spec.timeout)
        handler = self.handler
        started = time.monotonic()
        response: Any = None
        error: Exception | None = None
        with patched_environ(self.environment):
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
