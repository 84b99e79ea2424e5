"""The settings the template's environment gives every function."""

import pytest

from chartmogul_sync.config import Settings, UploadMode


def test_an_empty_mapping_config_parameter_means_the_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAPPING_CONFIG_PATH", "")  # template.yaml passes "" when MappingConfigPath is left empty
    assert Settings().mapping_config_path is None
    monkeypatch.setenv("MAPPING_CONFIG_PATH", "/var/task/mapping.yaml")
    assert Settings().mapping_config_path == "/var/task/mapping.yaml"


def test_an_unknown_upload_mode_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOAD_MODE", "bulk")
    assert Settings().upload_mode is UploadMode.BULK
    monkeypatch.setenv("UPLOAD_MODE", "turbo")
    with pytest.raises(ValueError, match="upload_mode"):
        Settings()


def test_the_exports_part_of_one_stripe_endpoint_follows_the_accounts_endpoint_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stripe's default is 25/s an endpoint; an account Stripe raised it for says so, and the backfill reads faster.
    assert Settings().stripe_endpoint_requests_per_second() == 25.0
    monkeypatch.setenv("STRIPE_ENDPOINT_RATE_LIMIT_PER_SECOND", "50")
    monkeypatch.setenv("STRIPE_AUDIT_SHARE", "0.2")
    assert Settings().stripe_endpoint_requests_per_second() == pytest.approx(40.0)  # 50 less the audit's part
