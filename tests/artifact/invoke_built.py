"""Run one handler of the built artifact the way Lambda does, in a process that sees nothing else.

Started by test_built_artifact.py as `python -S -E invoke_built.py REQUEST.json`: `-S` leaves out every
site-packages directory, `-E` ignores PYTHONPATH, so the only code importable is the standard library and the
three directories Lambda's Python runtime puts on sys.path (https://docs.aws.amazon.com/lambda/latest/dg/
python-package.html, packaging-layers.html): the function's code (/var/task), the layer's python/
(/opt/python) and the runtime's own boto3 (here: a directory of links to the same packages). The request names
them, the handler and the event; the environment is the function's. The result is printed on the last line
after RESULT_MARKER; everything the handler printed (its logs, its metrics) comes before it.
"""

import importlib.util
import json
import os
import sys
import sysconfig
import time
import uuid
from pathlib import Path

RESULT_MARKER = "=== handler result: "


class Context:
    """The attributes of Lambda's context object the handlers and Powertools read."""

    def __init__(self, function_name: str, function_arn: str, memory_mb: int, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"smoke/{self.aws_request_id}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def outside_modules(allowed: list[Path]) -> list[str]:
    """Modules loaded from anywhere but the standard library and the allowed directories."""
    roots = [Path(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib")] + allowed
    found = []
    for name, module in list(sys.modules.items()):
        location = getattr(module, "__file__", None)
        if name in ("__main__", "__mp_main__") or not location:  # this runner
            continue
        # Not resolved: the runtime directory's packages are links, and it is the path that counts.
        if not any(Path(os.path.abspath(location)).is_relative_to(root) for root in roots):
            found.append(f"{name} ({location})")
    return found


def main(request_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    allowed = [Path(os.path.abspath(p)) for p in (request["code_dir"], request["layer_dir"], request["runtime_dir"])]
    sys.path[:0] = [str(p) for p in allowed]
    module_name, _, function_name = request["handler"].rpartition(".")
    spec = importlib.util.spec_from_file_location(module_name, allowed[0] / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    context = Context(request["function_name"], request["function_arn"], request["memory_mb"], request["timeout_s"])
    error = None
    try:
        response = getattr(module, function_name)(request["event"], context)
    except Exception as exc:  # Lambda reports it as a failed invocation
        response, error = None, f"{type(exc).__name__}: {exc}"
    result = {"response": response, "error": error, "outside_modules": outside_modules(allowed)}
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
