"""The "process" backend: moto's server in a child process that never outlives its parent, with moto_fixes in it."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import boto3
import pytest

from localdev.aws.moto_process import (
    MotoProcess,
    MotoProcessError,
    child_processes,
    has_ended,
    process_cpu_seconds,
    start_moto_process,
)
from localdev.aws.template import REPO_ROOT

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# A parent that starts the backend, says where its moto child is, and waits (bounded) to be killed.
PARENT_SCRIPT = """
import json, time
from localdev.aws.moto_process import start_moto_process
with start_moto_process() as moto:
    print(json.dumps({"pid": moto.pid, "port": moto.port}), flush=True)
    time.sleep(60)
"""


def _sqs(moto: MotoProcess) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=moto.endpoint_url, **CREDENTIALS)


def _moto_children() -> list[int]:
    """This process's running moto children (other tests may have other children)."""
    children = []
    for pid in child_processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"localdev.aws.moto_process" in cmdline.read():
                    children.append(pid)
        except FileNotFoundError:
            continue
    return children


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait_until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_the_child_serves_aws_on_loopback_and_stops_with_its_context() -> None:
    with start_moto_process() as moto:
        assert _moto_children() == [moto.pid]
        url = _sqs(moto).create_queue(QueueName="probe")["QueueUrl"]
        assert url.startswith(f"http://127.0.0.1:{moto.port}/")
    assert _moto_children() == []  # waited for: no zombie either
    assert _refuses_connections(moto.port)


def test_each_child_starts_from_a_clean_account() -> None:
    with start_moto_process() as first:
        _sqs(first).create_queue(QueueName="left-behind")
    with start_moto_process() as second:
        assert _sqs(second).list_queues().get("QueueUrls", []) == []


def test_a_killed_parent_leaves_no_moto_child() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT], cwd=REPO_ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    moto_pid = None
    try:
        assert parent.stdout is not None
        readable, _, _ = select.select([parent.stdout], [], [], 60)
        assert readable, "the parent did not report its moto child in 60 s"
        child = json.loads(parent.stdout.readline())
        moto_pid = child["pid"]
        assert moto_pid in child_processes(parent.pid) and not _refuses_connections(child["port"])

        parent.send_signal(signal.SIGKILL)  # no cleanup code of the parent runs
        parent.wait(timeout=10)

        # Within the child's half-second check, or at once (end of file on its stdin); its threads may take a moment
        # longer than its main thread to go.
        assert _wait_until(lambda: has_ended(moto_pid) and _refuses_connections(child["port"]), 5), (
            "moto's process outlived its killed parent"
        )
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if moto_pid is not None and not has_ended(moto_pid):
            os.kill(moto_pid, signal.SIGKILL)  # the test failed: still leave no orphan behind


def test_a_child_not_ready_within_the_bound_fails_in_one_line_and_is_stopped() -> None:
    with (
        pytest.raises(MotoProcessError, match=r"was not ready within 0\.01 s") as failed,
        start_moto_process(ready_timeout_s=0.01),
    ):
        pytest.fail("the backend was not expected to start")  # pragma: no cover

    assert "\n" not in str(failed.value)
    assert _moto_children() == []


def test_moto_fixes_are_active_in_the_child() -> None:
    """moto's own SQS receive walks the whole queue three times for every message it returns (moto_fixes.py): with
    a thousand messages in the queue, twenty receives of ten cost the child several CPU seconds; patched, one walk
    per receive, well under one (measured on the 2-core development machine: 5.9 s unpatched, 0.13 s patched)."""
    with start_moto_process() as moto:
        sqs = _sqs(moto)
        url = sqs.create_queue(QueueName="long")["QueueUrl"]
        for start in range(0, 1000, 10):
            entries = [{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        before = process_cpu_seconds(moto.pid)
        for _ in range(20):  # visibility 0: the messages stay in the queue, which keeps its length
            received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
            assert len(received) == 10
        assert process_cpu_seconds(moto.pid) - before < 1.0


def test_a_child_whose_parent_is_gone_exits_even_while_its_pipe_stays_open() -> None:
    """The backstop for a pipe some other process still holds: the child checks that its parent is the process that
    started it (here it is told another pid, as if it had been adopted after its parent died)."""
    not_the_parent = os.getppid()
    child = subprocess.Popen(
        [sys.executable, "-m", "localdev.aws.moto_process", "--parent-pid", str(not_the_parent)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,  # kept open by this test: no end of file
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert select.select([child.stdout], [], [], 60)[0], "the child did not report its port in 60 s"
        assert json.loads(child.stdout.readline())["moto_fixes"] is True
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        child.wait(timeout=10)
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
