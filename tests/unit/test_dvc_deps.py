"""Each stage's code ``deps:`` in dvc.yaml are exactly the modules its script imports.

The imports are derived from the code (every ``import`` statement, including those inside
functions, followed transitively, plus each package's ``__init__.py`` that Python runs on the
way), so a new import can never silently escape DVC's tracking, and a listed module the stage
no longer imports (a needless rerun when it changes) is caught too.

Run as a script to print the expected code deps of every stage: ``python tests/unit/test_dvc_deps.py``.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("imgpipe", "stages")


def module_file(module: str) -> Path | None:
    """The file that defines ``module`` if it is one of ours, else None."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def direct_imports(path: Path) -> frozenset[str]:
    """Modules of ours that ``path`` imports anywhere in its body, with their parent packages."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0]
    else:
        package = package.rsplit(".", 1)[0] if "." in package else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: name may be a submodule or an attribute.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            for candidate in _with_parents(name):
                if module_file(candidate) is not None:
                    found.add(candidate)
    return frozenset(found)


def imported_files(script: Path) -> set[str]:
    """Every file of ours that running ``script`` as ``python -m`` executes, repo-relative."""
    module = ".".join(script.relative_to(ROOT).with_suffix("").parts)
    todo = _with_parents(module)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is not None:
            todo.extend(direct_imports(path) - seen)
    return {module_file(name).relative_to(ROOT).as_posix() for name in seen if module_file(name)}


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def code_deps(stage: dict) -> list[str]:
    deps = [next(iter(d)) if isinstance(d, dict) else d for d in stage.get("deps", [])]
    return [d.rstrip("/") for d in deps if d.split("/")[0] in PACKAGES]


def script_of(stage: dict) -> Path:
    cmd = stage["cmd"]
    module = cmd.split("-m", 1)[1].split()[0]
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_are_exactly_its_imports(name):
    stage = stages()[name]
    imports = imported_files(script_of(stage))
    deps = code_deps(stage)
    missing = sorted(f for f in imports if not covered(f, deps))
    assert not missing, f"stage {name} imports modules dvc.yaml does not list: {missing}"
    for dep in deps:
        path = ROOT / dep
        assert path.exists(), f"stage {name}: dep {dep} does not exist"
        files = [p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")] if path.is_dir() else [dep]
        unused = sorted(f for f in files if f not in imports)
        assert not unused, f"stage {name}: dep {dep} holds modules the stage never imports: {unused}"


def test_the_checker_sees_lazy_and_package_imports():
    files = imported_files(ROOT / "stages" / "download.py")
    assert "imgpipe/download/acquire.py" in files  # imported inside main()
    assert "imgpipe/download/__init__.py" in files and "imgpipe/__init__.py" in files
    assert "stages/__init__.py" in files


if __name__ == "__main__":
    for stage_name, spec in stages().items():
        print(f"{stage_name}:")
        for f in sorted(imported_files(script_of(spec))):
            print(f"      - {f}")
    sys.exit(0)
