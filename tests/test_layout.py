"""The node's layout stays readable: no import circles, no project imports hidden inside functions, a short root.

Each check reads the source with `ast` (nothing is imported), so a new circle or a new lazy import fails here with
the modules named, before it makes the architecture harder to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "generation" / "core_pipelines" / "do_grpo_rl_with_a_prompt"
PACKAGES = ("generation", "cli_utils")
HEAVY = {
    "torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "vllm", "deepspeed", "bitsandbytes",
    "openai", "huggingface_hub", "math_verify", "if_verifiable", "nltk", "langdetect", "pyarrow", "matplotlib",
    "wandb", "llama_cpp", "gguf", "safetensors",
}
"""Libraries that may be imported inside a function: heavy or optional, so they load only when a run needs them."""


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, ast.AST, bool]]:
    """(imported project module, node, inside a function) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node, id(node) in inside))
                break
        else:
            if isinstance(node, ast.Import) or not node.level:
                found.append((targets[-1], node, id(node) in inside))  # a library
    return found


def test_no_import_circles_among_the_project_modules():
    modules = project_modules()
    graph = {name: {t for t, _, _ in imports_of(name, path, modules) if t in modules} for name, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(graph[current])
        return False

    circles = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                      if reaches(b, a) and not _package_and_child(a, b, modules)})
    assert not circles, f"import circles (a imports b, and b leads back to a): {circles}"


def _package_and_child(a: str, b: str, modules: dict[str, Path]) -> bool:
    """A package's __init__ importing its own child (and the child the package) is how packages re-export."""
    return any(modules[p].name == "__init__.py" and c.rpartition(".")[0] == p for p, c in ((a, b), (b, a)))


def test_only_heavy_libraries_are_imported_inside_functions():
    modules = project_modules()
    lazy = []
    for name, path in modules.items():
        for target, node, inside in imports_of(name, path, modules):
            if inside and target.split(".")[0] not in HEAVY:
                lazy.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert not lazy, "imports inside functions (move them to the top of the module):\n" + "\n".join(lazy)


def test_the_node_root_is_short_and_every_folder_says_what_it_holds():
    root_modules = sorted(p.name for p in NODE.glob("*.py") if p.name != "__init__.py")
    assert len(root_modules) <= 6, root_modules
    assert "reward_functions.py" in root_modules  # the file users edit stays where the README says
    for package in (p for p in NODE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(package.read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{package.relative_to(ROOT)} needs a docstring saying what the folder holds"


def test_the_config_schema_reads_nothing_from_the_environment():
    source = (NODE / "config" / "schema.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(tree) if isinstance(n, (ast.Attribute, ast.Name))}
    assert not names & {"environ", "getenv", "world_size", "cuda"}, names & {"environ", "getenv", "world_size", "cuda"}
