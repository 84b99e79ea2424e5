"""The Lambda layer installs the same pinned versions the tests ran with."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(lines: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[match.group(1).lower()] = match.group(3)
    return pins


def test_every_dependency_is_pinned_and_the_layer_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    _pins(project["optional-dependencies"]["dev"])  # asserts the dev pins are exact too
    layer = _pins((ROOT / "layers/common/requirements.txt").read_text().splitlines())
    mismatched = {name: (version, runtime.get(name)) for name, version in layer.items() if runtime.get(name) != version}
    assert not mismatched, f"layer pin differs from pyproject (layer, pyproject): {mismatched}"
    assert "chartmogul" in layer and "stripe" in layer
