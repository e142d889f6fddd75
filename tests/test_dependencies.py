"""The dependency locks are the whole truth about what Loupe runs on: they satisfy what
``pyproject.toml`` asks for, the environment the suite runs in is exactly what they pin, and
every third-party module the code imports is declared, not borrowed from another package."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
PACKAGES = ("accounts", "bench", "config", "curation", "inference", "labelling", "tests")


def locked_pins(path: Path) -> dict[NormalizedName, Version]:
    """The pins of a lock that apply to this interpreter and platform (a universal lock may pin
    one package twice, under exclusive markers)."""
    pins: dict[NormalizedName, Version] = {}
    for line in path.read_text().splitlines():
        if not line or line[0] in " #-":
            continue
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        [spec] = requirement.specifier
        assert spec.operator == "==", f"{path.name} pins with ==, not {spec}: {line}"
        pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject.toml's requirements with the given extras, self-references expanded."""
    found = [Requirement(line) for line in project()["dependencies"]]
    optional = project()["optional-dependencies"]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in optional[extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == "loupe":
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def test_every_line_of_the_locks_carries_a_hash() -> None:
    for path in (LOCK, RUNTIME_LOCK):
        text = path.read_text()
        entries = [line for line in text.splitlines() if line and line[0] not in " #-"]
        assert entries, f"{path.name} pins nothing"
        assert text.count("==") >= len(entries)
        for entry in entries:
            assert entry.endswith("\\"), f"{path.name}: {entry} has no --hash line"


def test_the_lock_satisfies_every_requirement_of_pyproject() -> None:
    """A requirement added to or tightened in pyproject.toml without `make lock` fails here."""
    for path, extras in ((LOCK, ("dev",)), (RUNTIME_LOCK, ())):
        pins = locked_pins(path)
        for requirement in declared(extras):
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement} is not in {path.name}: run `make lock`"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{path.name} pins {name}=={pins[name]}, outside {requirement}: run `make lock`"
            )


def test_the_runtime_lock_pins_what_the_full_lock_pins() -> None:
    full = locked_pins(LOCK)
    for name, version in locked_pins(RUNTIME_LOCK).items():
        assert full.get(name) == version, (
            f"runtime.txt has {name}=={version}, lock.txt {full.get(name)}"
        )


def test_the_environment_holds_exactly_the_locked_versions() -> None:
    """The suite runs on what the lock pins: a stale virtual environment is caught, not trusted."""
    if Path(sys.prefix) != ROOT / ".venv":
        # Only `make`'s own environment is built from the lock; another one is the user's.
        return
    for name, version in locked_pins(LOCK).items():
        installed = Version(metadata.version(name))
        assert installed == version, f"{name} {installed} is installed; the lock pins {version}"


def third_party_imports() -> Iterator[tuple[str, str]]:
    """(top-level module, file) for every absolute import in Loupe's own code, function-local
    imports included."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield alias.name.split(".")[0], str(path.relative_to(ROOT))
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    yield node.module.split(".")[0], str(path.relative_to(ROOT))


def test_every_imported_distribution_is_declared_in_pyproject() -> None:
    local = set(PACKAGES)
    providers = metadata.packages_distributions()
    names = {canonicalize_name(r.name) for r in declared(tuple(project()["optional-dependencies"]))}
    undeclared = set()
    for module, path in third_party_imports():
        if module in sys.stdlib_module_names or module in local or module == "__future__":
            continue
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        assert distributions, f"{path} imports {module}, which no installed package provides"
        if not distributions & names:
            undeclared.add(f"{module} ({', '.join(sorted(distributions))}) in {path}")
    assert not undeclared, "imported but not declared in pyproject.toml:\n" + "\n".join(
        sorted(undeclared)
    )
