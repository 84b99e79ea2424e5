"""A handler module the local runtime imports from a CodeUri, as it will the real functions/<name>/app.py."""

import os
from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "event": event,
        "function_name": context.function_name,
        "service": os.environ["POWERTOOLS_SERVICE_NAME"],
        "raw_queue_url": os.environ["RAW_QUEUE_URL"],
    }
