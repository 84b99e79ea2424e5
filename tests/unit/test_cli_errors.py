"""Every bad command-line input ends in one line saying what is wrong and a non-zero exit (2 for a bad option,
1 for a failure), never in a traceback; long runs check their output paths before they start."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chartmogul_sync.cli import main
from chartmogul_sync.config import get_settings


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    get_settings.cache_clear()  # the command reads the environment it is given
    try:
        return CliRunner().invoke(main, list(args), env=env)
    finally:
        get_settings.cache_clear()


def assert_one_line_error(result: Result, exit_code: int, *expected: str) -> str:
    output = result.output
    assert result.exit_code == exit_code, output
    assert isinstance(result.exception, SystemExit), result.exception  # click's exit, not a crash
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rates", '{"EUR": '], ["--rates", "not valid JSON"]),
        (["--rates", "[1]"], ["--rates", "expected a JSON object", "got list"]),
        (["--rates", '{"EUR": "high"}'], ["--rates", "'EUR' must be a positive number"]),
        (["--now", "yesterday"], ["--now", "'yesterday' is not an ISO 8601 time"]),
        (["--db", "/nonexistent-dir/state.db"], ["--db", "does not exist"]),
        (["--port", "70000"], ["--port"]),
    ],
)
def test_chartmogul_emulator_refuses_bad_options_in_one_line(args: list[str], expected: list[str]) -> None:
    assert_one_line_error(run("emulate", "chartmogul", *args, "--exit-after", "5"), 2, *expected)


def test_chartmogul_emulator_on_a_port_in_use_says_so(busy_port: int) -> None:
    result = run("emulate", "chartmogul", "--port", str(busy_port), "--exit-after", "5")
    assert_one_line_error(result, 1, f"cannot listen on 127.0.0.1:{busy_port}", "--port")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--customers", "-5"], ["--customers", "-5"]),
        (["--months", "0"], ["--months", "0"]),
        (["--ground-truth", "/nonexistent-dir/truth.json"], ["--ground-truth", "does not exist"]),
        (["--endpoint-rate-limit", "-1"], ["--endpoint-rate-limit", "-1"]),
    ],
)
def test_stripe_emulator_refuses_bad_options_in_one_line(args: list[str], expected: list[str]) -> None:
    assert_one_line_error(run("emulate", "stripe", *args, "--exit-after", "5"), 2, *expected)


def test_stripe_emulator_on_a_port_in_use_says_so(busy_port: int) -> None:
    result = run(
        "emulate", "stripe", "--port", str(busy_port), "--customers", "1", "--months", "1", "--exit-after", "5"
    )
    assert_one_line_error(result, 1, f"cannot listen on 127.0.0.1:{busy_port}")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--customers", "0"], ["--customers", "0"]),
        (["--months", "0"], ["--months"]),
        (["--chartmogul-faults", "abc"], ["--chartmogul-faults"]),
        (["--report", "/nonexistent-dir/x.json"], ["--report", "does not exist"]),
        (["--logs", "/nonexistent-dir/logs.jsonl"], ["--logs", "does not exist"]),
    ],
)
def test_demo_refuses_bad_options_before_it_runs(args: list[str], expected: list[str]) -> None:
    # Refused at parse time: the demo (minutes) never starts, so nothing is lost at its end.
    assert_one_line_error(run("demo", *args), 2, *expected)


def test_demo_refuses_a_report_path_that_is_a_directory(tmp_path: Path) -> None:
    assert_one_line_error(run("demo", "--report", str(tmp_path)), 2, "--report", "is a directory")


NO_AWS = {
    "AWS_DEFAULT_REGION": "",
    "AWS_REGION": "",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "BAD_RECORDS_QUEUE_URL": "",
    "RAW_QUEUE_URL": "",
    "UPLOAD_QUEUE_URL": "",
    "EXPORT_FAILED_QUEUE_URL": "",
    "SCHEDULE_DEAD_LETTER_QUEUE_URL": "",
}


@pytest.mark.parametrize(
    ("queue", "variable"),
    [
        ("bad-records", "BAD_RECORDS_QUEUE_URL"),
        ("raw-dlq", "RAW_QUEUE_URL"),
        ("upload-dlq", "UPLOAD_QUEUE_URL"),
        ("export-failed", "EXPORT_FAILED_QUEUE_URL"),
        ("schedule-dlq", "SCHEDULE_DEAD_LETTER_QUEUE_URL"),
    ],
)
def test_dlq_without_a_queue_url_says_which_variable_or_stack_to_give(queue: str, variable: str) -> None:
    for command in ("list", "replay"):
        result = run("dlq", command, queue, env=NO_AWS)
        assert_one_line_error(result, 2, f"{variable} is not set", "--stack")


def test_dlq_without_a_region_says_so_instead_of_botocores_message() -> None:
    result = run("dlq", "list", "http://127.0.0.1:1/123456789012/bad-records", env=NO_AWS)
    assert_one_line_error(result, 1, "no AWS region", "AWS_DEFAULT_REGION")


def test_dlq_stack_without_a_region_says_so() -> None:
    assert_one_line_error(run("dlq", "list", "bad-records", "--stack", "prod", env=NO_AWS), 1, "no AWS region")


@pytest.mark.parametrize("extra", [[], ["--stack", "prod"], ["--compare-data-source", "Stripe"]])
def test_audit_stage_says_why_the_audit_has_no_stage_filter(extra: list[str]) -> None:
    # `--stage` filters `cmsync dlq list|replay`; the audit reads every stage's queues to name causes. It says so
    # before reading any key or stack (no AWS, no keys here), instead of click's "did you mean --stack?".
    error = assert_one_line_error(run("audit", "--stage", "upload", *extra, env=NO_AWS), 2, "the audit has no --stage")
    assert "cmsync dlq list QUEUE --stage" in error and "--customer" in error
    assert "Did you mean" not in error


def test_transform_of_a_deeply_nested_file_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    assert_one_line_error(run("transform", str(deep)), 1, "not a JSON file", "recursion limit exceeded")


def test_config_check_of_a_duplicate_key_names_its_line(tmp_path: Path) -> None:
    config = tmp_path / "mapping.yaml"
    config.write_text("metered: one_time\nmetered: subscription\n")
    result = run("config", "check", str(config))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "line 2, column 1: not valid YAML (duplicate key 'metered' (first given on line 1))" in result.output
