"""The product's command line does not import the local world (moto, emulators, generator) unless asked to."""

import subprocess
import sys


def test_importing_the_cli_and_running_a_product_command_loads_no_local_world_module() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from chartmogul_sync.cli import main\n"
        "result = CliRunner().invoke(main, ['config', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('localdev', 'moto')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_local_world_commands_still_run_when_asked_for() -> None:
    from click.testing import CliRunner

    from chartmogul_sync.cli import main

    result = CliRunner().invoke(main, ["emulate", "stripe", "--help"])
    assert result.exit_code == 0 and "Stripe" in result.output
