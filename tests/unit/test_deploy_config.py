"""samconfig.toml and events/env.json stay in step with template.yaml.

sam replaces the saved parameter list when `--parameter-overrides` is passed (aws-sam-cli #2380), so the
documented way to change one parameter is to edit samconfig.toml: that only works if it lists every parameter.
"""

import json
import shlex
import tomllib

from localdev.aws.template import DEFAULT_TEMPLATE, REPO_ROOT, Template

# The one deliberate difference from the template: the first deploy runs without a schedule (README "Deploy").
FIRST_DEPLOY_OVERRIDES = {"ScheduleState": "DISABLED"}


def saved_overrides() -> dict[str, str]:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    entries = config["default"]["deploy"]["parameters"]["parameter_overrides"]
    return dict(shlex.split(entry)[0].split("=", 1) for entry in entries)


def test_samconfig_saves_every_template_parameter_at_its_default() -> None:
    template = Template.load(DEFAULT_TEMPLATE)
    defaults = {name: str(p.default) for name, p in template.parameters.items()}
    assert saved_overrides() == {**defaults, **FIRST_DEPLOY_OVERRIDES}


def test_local_invoke_env_file_sets_every_variable_the_functions_read_from_the_stack() -> None:
    template = Template.load(DEFAULT_TEMPLATE)
    stack_variables = set(template.raw["Globals"]["Function"]["Environment"]["Variables"])
    env_file = json.loads((REPO_ROOT / "events" / "env.json").read_text())["Parameters"]
    # The stack's resource names and URLs; the settings with stack parameters keep their template values.
    resources = {"STATE_TABLE", "STAGING_BUCKET", "RAW_QUEUE_URL", "UPLOAD_QUEUE_URL", "BAD_RECORDS_QUEUE_URL"}
    assert resources <= stack_variables
    assert resources | {"STRIPE_SECRET_NAME", "CHARTMOGUL_SECRET_NAME", "AWS_ENDPOINT_URL"} <= set(env_file)
