"""The "imports only ..." rules of ARCHITECTURE.md are forbidden-module contracts in
pyproject.toml. A forbidden list only covers the modules it names, so this test checks that
each one names every durably module outside what the layer may import: a new module is
forbidden to the layers below it until someone decides otherwise."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "durably"

# What each layer may import (besides itself), as ARCHITECTURE.md's import rules say.
ALLOWED = {
    "durably.core": {"durably.errors"},
    "durably.store": {"durably.core", "durably.errors", "durably.config"},
    "durably.engine": {"durably.core", "durably.errors", "durably.store.base", "durably.steps",
                       "durably.context", "durably.functions"},
    "durably.admin": {"durably.core", "durably.errors", "durably.store.base"},
}


def _modules(package: Path, name: str) -> set[str]:
    """The package's direct children: modules and subpackages (not the package itself)."""
    out = set()
    for child in package.iterdir():
        if child.is_dir() and (child / "__init__.py").exists():
            out.add(f"{name}.{child.name}")
        elif child.suffix == ".py" and child.name != "__init__.py":
            out.add(f"{name}.{child.stem}")
    return out


def _everything_else(source: str) -> set[str]:
    """Every top-level durably module, and the store's own modules, that ``source`` is not."""
    mods = _modules(PACKAGE, "durably") | _modules(PACKAGE / "store", "durably.store")
    mods -= {"durably.store", "durably.__main__", "durably._version"}  # _version: a constant, below everything
    return {m for m in mods if m != source and not m.startswith(source + ".") and not source.startswith(m + ".")}


def _covered(module: str, names: set[str]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def _contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


@pytest.mark.parametrize("source", sorted(ALLOWED))
def test_forbidden_lists_name_every_module_outside_the_layer(source):
    contracts = [c for c in _contracts() if c.get("type") == "forbidden" and c.get("source_modules") == [source]]
    assert contracts, f"no forbidden contract has source_modules = [{source!r}]"
    forbidden = {m for c in contracts for m in c["forbidden_modules"]}
    missing = sorted(m for m in _everything_else(source)
                     if not _covered(m, ALLOWED[source]) and not _covered(m, forbidden))
    assert not missing, f"{source} may import these: forbid them in pyproject.toml, or allow them here: {missing}"
    wrongly = sorted(m for m in forbidden if _covered(m, ALLOWED[source]))
    assert not wrongly, f"{source}: forbidden but allowed by ARCHITECTURE.md: {wrongly}"


def test_no_module_is_over_700_lines():
    """DESIGN §7 / ARCHITECTURE.md: a module that grows past 700 lines is split by concern."""
    import pathlib

    import durably

    root = pathlib.Path(durably.__file__).parent
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 700}
    assert not long, f"split these modules: {long}"
