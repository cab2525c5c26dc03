"""Dependencies point one way: `harness` uses `baselines` and `methods`; `methods` and `baselines`
never import `harness`, and `methods.common` imports no method. Every import counts, also those
inside functions.

The small worlds live under harness/worlds; training and the random test pipelines reach them
by name through entry points (methods/common/worlds.py), never by import.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent



def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file, relative imports made absolute."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1]) if path.is_relative_to(ROOT) else ""
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


def test_methods_and_baselines_do_not_import_the_harness():
    assert not violations(), f"imports against the layering: {sorted(violations())}"


def test_the_worlds_are_found_by_name_through_entry_points():
    from methods.common.errors import UserError
    from methods.common.worlds import world

    assert (world("tiny-sd15").PIPELINE / "model_index.json").is_file()
    assert world("tiny-sd15").training_prompts(0, 3) == world("tiny-sd15").training_prompts(0, 3)
    assert len(set(world("tiny-sd15").training_prompts(0, 3))) == 3
    assert world("gmm").GaussianMixture.default().classes >= 2
    try:
        world("tiny-sd16")
    except UserError as err:
        assert "no world 'tiny-sd16'" in str(err) and "gmm" in str(err)
    else:
        raise AssertionError("an unknown world must be a UserError")


def test_the_import_walk_sees_imports_inside_functions(tmp_path):
    assert "methods.common.worlds" in imports(ROOT / "methods" / "tdm" / "backbones.py")
    inner = tmp_path / "inner.py"
    inner.write_text("def f():\n    from harness.worlds import gmm\n")
    assert "harness.worlds" in imports(inner)  # a function-level import
    assert "methods.common.provenance" in imports(ROOT / "methods" / "tdm" / "bench.py")
