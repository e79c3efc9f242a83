"""The package's shape: folders that are the concepts a speech researcher names, each importing only
downward (docs/architecture.md), no import circle, and no import inside a function but where it keeps a
light module free of torch or scikit-learn (with a comment saying so)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# bottom to top: a module may import its own layer's modules and those of the layers below
LAYERS = [
    ("base", ("cltm", "cltm.errors", "cltm.defaults", "cltm.io", "cltm.paths", "cltm.records", "cltm.method")),
    ("tasks", ("cltm.tasks",)),
    ("config", ("cltm.config",)),
    ("data", ("cltm.data",)),
    ("model", ("cltm.model",)),
    ("train", ("cltm.train",)),
    ("grid", ("cltm.grid",)),
    ("analysis", ("cltm.analysis",)),
    ("demo", ("cltm.demo",)),
    ("entry", ("cltm.worker",)),
]
# what a function-level import must say next to it: why it is not at the top
LIGHT = ("torch", "scikit-learn", "sklearn", "light")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "cltm").rglob("*.py"))}


def layer_of(name: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # the package itself ("cltm", its __init__) is a layer of its own name only, not a prefix of all
            if (name == prefix or prefix != "cltm" and name.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found is not None, f"{name} is in no layer of LAYERS: add it (and to docs/architecture.md)"
    return found


def imports(path: Path, known: set[str]):
    """(imported module, line, inside a function) for every import of the package in a file. `from
    cltm.x import y` names module cltm.x.y where that is a module, else cltm.x."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "cltm":
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    out.append((sub if sub in known else child.module, child.lineno, inside))
            elif isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, inside) for a in child.names if a.name.split(".")[0] == "cltm")
            visit(child, inside)

    visit(tree, False)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges = {name: set() for name in mods}
    for name, path in mods.items():
        for target, _, _ in imports(path, set(mods)):
            if target != name:
                edges[name].add(target)
    return edges


def test_every_module_is_in_a_layer_and_imports_only_downward():
    mods = modules()
    upward = []
    for name, path in mods.items():
        for target, line, _ in imports(path, set(mods)):
            if layer_of(target) > layer_of(name):
                upward.append(f"{path.relative_to(SRC)}:{line} ({LAYERS[layer_of(name)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports that go up the layer order:\n" + "\n".join(upward)


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def walk(node, stack):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_imports_inside_functions_say_why():
    mods = modules()
    unexplained = []
    for name, path in mods.items():
        lines = path.read_text().splitlines()
        for target, line, inside in imports(path, set(mods)):
            if not inside:
                continue
            near = " ".join(lines[max(0, line - 3):line]).lower()
            if not any(word in near for word in LIGHT):
                unexplained.append(f"{path.relative_to(SRC)}:{line} imports {target} inside a function")
    assert not unexplained, ("an import inside a function must keep a light module free of torch or "
                             "scikit-learn, and say so in a comment:\n" + "\n".join(unexplained))


def test_no_private_name_is_imported_from_another_module():
    mods = modules()
    private = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cltm"):
                private += [f"{path.relative_to(SRC)}:{node.lineno} imports {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_the_light_entry_points_do_not_import_torch():
    """Snakemake plans with cltm.config and cltm.paths, and the job's client (python -m cltm.worker) puts
    back kept cells with cltm.grid.cli: none of them may pay for torch, transformers or scikit-learn."""
    import subprocess
    import sys

    code = ("import sys; import cltm.config, cltm.config.targets, cltm.config.record, cltm.paths, cltm.grid.cli, "
            "cltm.grid.worker, cltm.data.plan, cltm.tasks; "
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
