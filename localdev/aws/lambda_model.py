"""What Lambda gives a handler, rebuilt in-process: the context object, the SQS event shape, the environment.

Sources: docs/sources.md#aws-local-poller (in-process event source mapping), AWS Lambda developer
guide "Using Lambda with Amazon SQS" (event shape) and "Lambda context object in Python".
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


class LocalLambdaContext:
    """The attributes and method of Lambda's Python context object that handlers and Powertools read."""

    def __init__(self, function_name: str, function_arn: str, memory_size: int, timeout_seconds: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_size
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"
        self.timeout_seconds = timeout_seconds
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(code_dir: Path, handler: str, unique_prefix: str) -> Handler:
    """Import `module.function` from a function's CodeUri by file path.

    Importing by path under a unique module name keeps the three `app.py` modules from clashing in
    `sys.modules`; a function directory holds just its handler module, the rest comes from the layer.
    """
    module_name, _, function_name = handler.rpartition(".")
    path = code_dir / f"{module_name.replace('.', '/')}.py"
    if not path.is_file():
        raise FileNotFoundError(f"handler module {path} not found (Handler {handler!r}, CodeUri {code_dir})")
    unique_name = f"_localdev_{unique_prefix}_{module_name.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(unique_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module  # pydantic and dataclasses look classes up by module name
    spec.loader.exec_module(module)
    function = getattr(module, function_name)
    if not callable(function):
        raise TypeError(f"{path}: {function_name} is not callable")
    return function  # type: ignore[no-any-return]


def sqs_event_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of a Lambda SQS event, built from a ReceiveMessage result.

    Lambda renames the SQS API's fields (`MessageId` → `messageId`, `StringValue` → `stringValue`) and always
    sends the list fields of message attributes.
    """
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": attribute.get("StringValue"),
                "binaryValue": attribute.get("BinaryValue"),
                "stringListValues": attribute.get("StringListValues", []),
                "binaryListValues": attribute.get("BinaryListValues", []),
                "dataType": attribute["DataType"],
            }
            for name, attribute in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    for attribute in record["messageAttributes"].values():
        for key in ("stringValue", "binaryValue"):
            if attribute[key] is None:
                del attribute[key]
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


@contextmanager
def patched_environ(updates: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables for the duration of the block, then restore them."""
    saved = {name: os.environ.get(name) for name in updates}
    try:
        for name, value in updates.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
