"""Dependencies point one way: `harness` uses `baselines` and `methods`; `methods` and `baselines`
never import `harness`, and `methods.common` imports no method. Every import counts, also those
inside functions.

KNOWN holds the edges that still break the rule: the small worlds live under harness/worlds, and
training reaches them by name (`teacher=tiny-sd15`, `prompts=tiny-sd15`, `backbone=gmm`), as do
the random test pipelines (they borrow tiny-sd15's tokenizer). The list may only shrink: a new
edge fails the test, and so does a listed one that has gone (delete it from the list).
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KNOWN = {
    ("methods/common/random_pipelines.py", "harness.worlds.tiny_sd15.judge"),
    ("methods/common/random_pipelines.py", "harness.worlds.tiny_sd15.grammar"),
    ("methods/common/random_pipelines.py", "harness.worlds.tiny_sd15.models"),
    ("methods/tdm/pipeline_backbone.py", "harness.worlds.tiny_sd15.judge"),
    ("methods/tdm/pipeline_backbone.py", "harness.worlds.tiny_sd15.dataset"),
    ("methods/tdm/backbones.py", "harness.worlds.gmm"),
}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file, relative imports made absolute."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            else:
                out.add(node.module)
    return out


def violations() -> set[tuple[str, str]]:
    found = set()
    for top in ("methods", "baselines"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for module in imports(path):
                if module == "harness" or module.startswith("harness."):
                    found.add((rel, module))
                if rel.startswith("methods/common/") and module.startswith("methods.") \
                        and not module.startswith("methods.common"):
                    found.add((rel, module))
    return found


def test_methods_and_baselines_do_not_import_the_harness_beyond_the_known_edges():
    found = violations()
    assert not found - KNOWN, f"new imports against the layering: {sorted(found - KNOWN)}"
    assert not KNOWN - found, f"these edges are gone; delete them from KNOWN: {sorted(KNOWN - found)}"


def test_the_import_walk_sees_imports_inside_functions(tmp_path):
    assert "harness.worlds.gmm" in imports(ROOT / "methods" / "tdm" / "backbones.py")  # a function-level import
    assert "methods.common.provenance" in imports(ROOT / "methods" / "tdm" / "bench.py")
