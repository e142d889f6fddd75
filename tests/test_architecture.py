"""Loupe's apps depend one way (README "Architecture"): the import-linter contracts in
``pyproject.toml`` hold, every app has its place in them, and no lower app reaches a higher
one's models by name, which import-linter cannot see."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def layer_modules() -> list[str]:
    """Every module the layers contract names, highest first."""
    [layers] = [c for c in contracts() if c["id"] == "layers"]
    return [name.strip() for layer in layers["layers"] for name in re.split(r"[|:]", layer)]


def app_layers() -> list[str]:
    """The apps of the layers contract, highest first (config's modules left out)."""
    return [name for name in layer_modules() if "." not in name]


def test_the_import_contracts_hold() -> None:
    """A broken contract names the importing line: move the code to the layer it belongs to,
    or let the higher app plug in (README "Architecture")."""
    result = subprocess.run(
        [Path(sys.executable).with_name("lint-imports"), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_loupe_app_has_a_layer() -> None:
    local = {
        config.name
        for config in apps.get_app_configs()
        if Path(config.path).resolve().parent == ROOT
    }
    assert local == set(app_layers())


def test_every_module_of_config_has_a_layer() -> None:
    """config holds both the wiring on top and the plumbing at the bottom: a new module there
    must say which it is."""
    modules = {
        f"config.{path.stem}"
        for path in (ROOT / "config").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert modules == {name for name in layer_modules() if name.startswith("config.")}


def test_no_app_names_a_higher_apps_models() -> None:
    """``apps.get_model("labelling", ...)`` or a ``"labelling.Model"`` string in curation is the
    same dependency as an import, hidden from import-linter."""
    order = app_layers()
    found = []
    for position, app in enumerate(order):
        higher = "|".join(order[:position])
        if not higher:
            continue
        by_name = re.compile(rf"""get_model\(\s*["']({higher})["']|["']({higher})\.[A-Z]\w*["']""")
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if by_name.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
