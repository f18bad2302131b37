"""Print the import graph of ``imgpipe`` and ``stages``: modules, arrows, upward arrows, cycles.

    python benchmarks/import_graph.py                 # this checkout
    python benchmarks/import_graph.py --root DIR      # another checkout (a `git worktree add` of an old commit)
    python benchmarks/import_graph.py --arrows        # also list every package-level arrow

The code is parsed, not imported (nothing runs, torch is not loaded). An arrow A -> B means a
module of A imports a module of B, at module top level or inside a function ("lazy"; counted too:
it is a dependency all the same, though it cannot make an import-time cycle).

Packages are placed in layers (LAYERS below, lowest first): shared foundations, then one layer per
pipeline step in the order the data flows, then the tools a person runs. An arrow that runs
upward goes from a lower layer into a higher one: the lower package then depends on something
built on top of it, and the two can no longer be understood, tested or changed one at a time.
Cycles are strongly connected components (scipy.sparse.csgraph) of the module graph and of the
package graph.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

# Lowest first. Old package names (before the rename to the stage names) sit beside the new ones
# so the script runs on older commits too.
LAYERS: list[tuple[str, ...]] = [
    ("imgpipe", "imgpipe.errors", "imgpipe.contracts", "imgpipe.io", "imgpipe.params", "imgpipe.stage",
     "imgpipe.arrayfiles", "imgpipe.rawdata", "imgpipe.torchenv", "imgpipe.labeltable"),
    ("imgpipe.privacy",),  # the download stage's take-downs, metadata strip and faces; pseudonyms
    ("imgpipe.download", "imgpipe.sources", "imgpipe.preprocess", "imgpipe.labelstudio",
     "imgpipe.storedsplit"),  # storedsplit: reads the preprocessed shards (augment, train, evaluate)
    ("imgpipe.labels",),
    ("imgpipe.validate", "imgpipe.clean", "imgpipe.split"),
    ("imgpipe.card", "imgpipe.boxcard", "imgpipe.augment"),
    ("imgpipe.models",),
    ("imgpipe.inference",),  # the saved model and batched prediction: train, evaluate and predict use it
    ("imgpipe.train", "imgpipe.training"),
    ("imgpipe.evaluate",),
    ("imgpipe.predict", "imgpipe.runcache", "imgpipe.review", "imgpipe.export", "imgpipe.diff"),
    ("imgpipe.cli",),
    ("stages",),
]
LAYER_OF = {package: n for n, packages in enumerate(LAYERS) for package in packages}
ROOTS = ("imgpipe", "stages")


def modules_of(root: Path) -> dict[str, Path]:
    found = {}
    for top in ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def package_of(module: str) -> str:
    """``imgpipe.download.fetch`` -> ``imgpipe.download``; ``imgpipe.io`` -> itself; ``stages.x`` -> ``stages``."""
    parts = module.split(".")
    return "stages" if parts[0] == "stages" else ".".join(parts[:2])


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that ``name`` (a module or a name inside one) is, or None if outside."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, bool]:
    """Project modules ``module`` imports -> whether any of those imports is at module top level."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / try blocks at top level still run at import
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(node)}
    is_package = path.name == "__init__.py"
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        for target in targets:
            resolved = resolve(target, modules)
            if resolved is None or resolved == module:
                continue
            found[resolved] = found.get(resolved, False) or id(node) in top_level
    return found


def cycles(nodes: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    index = {n: i for i, n in enumerate(nodes)}
    rows = [index[a] for a, _ in edges]
    cols = [index[b] for _, b in edges]
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(nodes), len(nodes)))
    _count, labels = connected_components(graph, directed=True, connection="strong")
    groups = defaultdict(list)
    for node, label in zip(nodes, labels, strict=True):
        groups[label].append(node)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--arrows", action="store_true", help="list every package-level arrow")
    args = parser.parse_args()

    modules = modules_of(args.root)
    edges: dict[tuple[str, str], bool] = {}
    for module, path in modules.items():
        for target, eager in imports_of(module, path, modules).items():
            edges[(module, target)] = eager
    packages = sorted({package_of(m) for m in modules})
    unplaced = [p for p in packages if p not in LAYER_OF]
    pkg_edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (a, b), eager in edges.items():
        pa, pb = package_of(a), package_of(b)
        if pa != pb:
            pkg_edges[(pa, pb)].append(f"{a} -> {b}" + ("" if eager else " (lazy)"))

    print(f"root: {args.root}")
    print(f"modules: {len(modules)} in {len(packages)} packages")
    print(f"module arrows: {len(edges)} ({sum(edges.values())} at import time, "
          f"{len(edges) - sum(edges.values())} lazy, inside functions)")
    print(f"package arrows: {len(pkg_edges)}")
    if unplaced:
        print(f"packages in no layer (add them to LAYERS): {', '.join(unplaced)}")
    print("layers, lowest first:")
    for n, layer in enumerate(LAYERS):
        present = [p for p in layer if p in packages]
        if present:
            print(f"  {n}: {' '.join(present)}")
    if args.arrows:
        print("package arrows:")
        for (pa, pb), via in sorted(pkg_edges.items()):
            print(f"  {pa} -> {pb}  ({len(via)} imports)")

    upward = sorted((pa, pb) for pa, pb in pkg_edges
                    if pa in LAYER_OF and pb in LAYER_OF and LAYER_OF[pa] < LAYER_OF[pb])
    print(f"upward arrows: {len(upward)}")
    for pa, pb in upward:
        print(f"  {pa} (layer {LAYER_OF[pa]}) -> {pb} (layer {LAYER_OF[pb]})")
        for line in sorted(pkg_edges[(pa, pb)]):
            print(f"      {line}")

    eager_edges = {e for e, eager in edges.items() if eager}
    for title, found in (
        ("module cycles at import time", cycles(sorted(modules), eager_edges)),
        ("module cycles counting lazy imports", cycles(sorted(modules), set(edges))),
        ("package cycles", cycles(packages, set(pkg_edges))),
    ):
        print(f"{title}: {len(found)}")
        for group in found:
            print(f"  {' <-> '.join(group)}")


if __name__ == "__main__":
    main()
