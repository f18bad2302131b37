"""Docs that cannot go stale: every page's params, links, commands and code names exist.

Checked on README.md and every docs/*.md page:
- every params key named in ``-S key=value`` or in backticks (``train.lr``,
  ``validate.near_duplicates.threshold``, ``${paths.raw}``) exists in params.yaml;
- every relative link resolves (and its ``#anchor`` names a heading of the target page);
- every ``python -m stages.X`` / ``python -m imgpipe.X`` / ``imgpipe <subcommand>`` /
  ``python <script>.py`` in code exists, and so does every backticked repository path
  (``imgpipe/io.py``) and dotted code name (``imgpipe.io.write_json``).
And no tracked file outside the tests names a path of one particular machine (``/work/...``,
``/root/...``, ``/home/<user>/...``).
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# Dotted names in backticks that start like a params section but are something else.
NOT_PARAMS = {
    "meta.level", "meta.reason", "meta.batch",  # keys of a GX expectation's meta, not params.yaml
    "train.foo",  # the unknown key docs/testing.md shows being refused
}
FILE_SUFFIXES = {"json", "jsonl", "parquet", "md", "csv", "tsv", "png", "py", "yaml", "yml", "lock", "bin",
                 "npy", "pt", "html", "txt", "gz", "tar", "zip"}

FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
SET_PARAM = re.compile(r"-S\s+['\"]?\+?([A-Za-z_]\w*(?:\.\w+)+)=")
DOTTED = re.compile(r"^\$?\{?([a-z_]+(?:\.[A-Za-z_0-9]+)+)\}?$")
MODULE_RUN = re.compile(r"python -m ((?:stages|imgpipe)(?:\.\w+)+)")
CLI_RUN = re.compile(r"(?:^|[\s;&|(])imgpipe\s+([a-z][\w-]*)")
SCRIPT_RUN = re.compile(r"python\s+((?:benchmarks|tools|tests|stages)/[\w/.-]+\.py)")
# annotations/ is left out: pages name example label files a user brings there.
REPO_PATH = re.compile(r"^((?:imgpipe|stages|tests|benchmarks|docs|tools|expectations)/[\w/.-]*)$")
MACHINE_PATH = re.compile(r"(?<![\w.$}])(/work/|/root/|/home/[a-z_][\w-]*/|/Users/[\w-]+/)")


def code_of(text: str) -> list[str]:
    """The page's code: fenced blocks and inline spans (prose is not checked for commands)."""
    blocks = FENCE.findall(text)
    return blocks + SPAN.findall(FENCE.sub("", text))


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def has_key(dotted: str) -> bool:
    node = PARAMS
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def param_keys_named(text: str) -> set[str]:
    keys = set()
    for code in code_of(text):
        keys |= set(SET_PARAM.findall(code))
    for span in SPAN.findall(text):
        match = DOTTED.match(span.strip())
        if not match:
            continue
        name = match.group(1)
        if name.split(".")[0] in PARAMS and name.rsplit(".", 1)[1] not in FILE_SUFFIXES and name not in NOT_PARAMS:
            keys.add(name)
    return keys


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_params_key_named_exists(page):
    missing = sorted(k for k in param_keys_named(page.read_text()) if not has_key(k) and k not in NOT_PARAMS)
    assert missing == [], f"{page_id(page)} names params that params.yaml lacks: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves(page):
    broken = []
    for match in LINK.finditer(FENCE.sub("", page.read_text())):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert broken == [], f"{page_id(page)}: {broken}"


def module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def code_name_exists(dotted: str) -> bool:
    """``imgpipe.io`` (a module) or ``imgpipe.io.write_json`` (a name a module defines)."""
    if module_file(dotted):
        return True
    parent, _, name = dotted.rpartition(".")
    found = module_file(parent) if parent else None
    return found is not None and name in top_level_names(found)


def subcommands() -> set[str]:
    tree = ast.parse((ROOT / "imgpipe" / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SUBCOMMANDS":
            return {k.value for k in node.value.keys}
    raise AssertionError("imgpipe/cli.py defines no SUBCOMMANDS")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_command_and_code_name_exists(page):
    text = page.read_text()
    missing = []
    for code in code_of(text):
        for module in MODULE_RUN.findall(code):
            if not (module_file(module) and (module_file(module).name != "__init__.py"
                                             or (module_file(module).parent / "__main__.py").exists())):
                missing.append(f"python -m {module}")
        for command in CLI_RUN.findall(code):
            if command not in subcommands():
                missing.append(f"imgpipe {command}")
        missing += [f"python {script}" for script in SCRIPT_RUN.findall(code) if not (ROOT / script).exists()]
    for span in SPAN.findall(FENCE.sub("", text)):
        span = span.strip()
        if (re.fullmatch(r"(imgpipe|stages)(\.\w+)+", span) and span.rsplit(".", 1)[1] not in FILE_SUFFIXES
                and not code_name_exists(span)):
            missing.append(span)
        path = REPO_PATH.match(span)
        if path and "<" not in span and "*" not in span and not (ROOT / path.group(1)).exists():
            missing.append(span)
    assert missing == [], f"{page_id(page)} names what does not exist: {missing}"


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [ROOT / f for f in out.split("\0") if f]


def test_no_tracked_file_names_a_path_of_one_machine():
    offenders = []
    for path in tracked_files():
        rel = path.relative_to(ROOT).as_posix()
        # Tests may build such paths on purpose (fixtures); dvc.lock is generated.
        if rel.startswith("tests/") or rel == "dvc.lock" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                      if MACHINE_PATH.search(line)]
    assert offenders == [], "\n".join(offenders)


def test_the_checks_catch_what_they_promise(tmp_path):
    assert param_keys_named("run `dvc exp run -S train.lrr=0.1` or set `validate.near_duplicates.treshold`") == {
        "train.lrr", "validate.near_duplicates.treshold"}
    assert not has_key("train.lrr") and has_key("train.lr") and has_key("validate.near_duplicates.threshold")
    assert param_keys_named("`metrics/labels.json` holds `labels.json` and `${paths.raw}`") == {"paths.raw"}
    assert not code_name_exists("imgpipe.shards.gather") and code_name_exists("imgpipe.io.write_json")
    assert CLI_RUN.findall("imgpipe predict x && imgpipe nosuch") == ["predict", "nosuch"]
    assert MACHINE_PATH.search("flock /work/coord/cpu.lock") and MACHINE_PATH.search("/home/ann/x")
    assert not MACHINE_PATH.search("${HOME}/work/x and ./work/y and /mnt/team/imgpipe")
    assert slug("Writing a stage") == "writing-a-stage" and slug("`dvc.yaml` that cannot go stale") == \
        "dvcyaml-that-cannot-go-stale"
