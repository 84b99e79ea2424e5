from localdev.chartmogul_emulator.pytest_fixtures import chartmogul_config, chartmogul_emulator  # noqa: F401
