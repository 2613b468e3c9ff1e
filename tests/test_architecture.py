"""The layering of the project, read from the source: an AST walk over every project .py file.

Checked on every import statement, including imports inside functions (they run too):

(a) the import graph of the project's modules has no cycles;
(b) the layers of ``utils/__init__.py`` hold: ``utils.fileio`` imports nothing of the
    project, the plain modules (``utils.cli``, ``utils.metrics``) import only it, ``nets`` never
    imports ``utils``, and each ``utils`` subpackage imports only the layers its docstring
    allows; no library module imports a script or a tool;
(c) no script (a top-level .py file or a tool) imports another script;
(d) an import inside a function is only for a heavy optional dependency (ALLOWED_LAZY), or
    the one lazy edge from the deployment path to the PyTorch side (LAZY_TORCH_SIDE);
(e) the deployment path (DEPLOY_PATH: what a sorting-line box runs from an exported model)
    never imports torch, torchvision or timm at module level, directly or through the project
    modules it imports at module level.

Tests are left out: they may import anything, anywhere. Each failure lists every offending
``file:line``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "tests", "logs", "data", "model_data", "docs", ".git"}

# Heavy optional dependencies that may be imported inside a function (so that a script that
# does not use them neither needs them installed nor pays for their import).
ALLOWED_LAZY = (
    "PySide6",
    "matplotlib",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "thop",
    "ultralytics",
    "pycocotools",
    "tensorboard",
    "torch.utils.tensorboard",
)

# The deployment path: the entry points a line box runs from an exported .onnx / .xml with only
# requirements-deploy.txt installed (tests/test_deploy_env.py runs them with torch blocked).
DEPLOY_PATH = (
    "predict",
    "get_miou",
    "gui",
    "utils.line.grading",
    "utils.line.conveyor",
    "utils.line.bench",
    "utils.inference.open_model",
)
TRAINING_STACK = ("torch", "torchvision", "timm")
# (importer, imported): a .pth checkpoint reaches the PyTorch side through this lazy import only
LAZY_TORCH_SIDE = {("utils.inference.open_model", "utils.inference.model_predictor")}

PLAIN = ("utils", "utils.cli", "utils.metrics")
# layer -> the layers it may import (itself included)
ALLOWED_LAYERS = {
    "fileio": set(),
    "plain": {"fileio"},
    "nets": {"nets"},
    "data": {"data", "plain", "fileio"},
    "training": {"training", "data", "plain", "fileio", "nets"},
    "deploy": {"deploy", "data", "plain", "fileio", "nets"},
    "inference": {"inference", "deploy", "data", "plain", "fileio", "nets"},
    "line": {"line", "inference", "deploy", "data", "plain", "fileio", "nets"},
    "script": {"fileio", "plain", "nets", "data", "training", "deploy", "inference", "line"},
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module, or the absolute name of an outside module
    where: str  # file:line
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    files = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP_DIRS or any(p.startswith(".") for p in rel.parts):
            continue
        files[module_name(path)] = path
    return files


def layer(module: str) -> str:
    """The layer of a project module (see utils/__init__.py)."""
    if module == "utils.fileio":
        return "fileio"
    if module in PLAIN:
        return "plain"
    top = module.split(".")[0]
    if top == "nets":
        return "nets"
    if top == "utils":
        return module.split(".")[1]
    return "script"  # top-level scripts and tools/


def _resolve(name: str, modules: set[str]) -> str | None:
    """The project module `name` refers to (a module, or the package holding the name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, modules: set[str]) -> None:
        self.module, self.path, self.modules = module, path, modules
        self.is_package = path.name == "__init__.py"
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, name: str, node: ast.AST) -> None:
        where = f"{self.path.relative_to(ROOT)}:{node.lineno}"
        target = _resolve(name, self.modules) or name
        self.found.append(Import(self.module, target, where, self.depth > 0))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # noqa: N802 (ast API)
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_If(self, node: ast.If) -> None:  # noqa: N802
        test = node.test
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            return  # never executed
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:  # noqa: N802
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # noqa: N802
        if node.level:  # relative: resolve against this module's package
            package = self.module if self.is_package else self.module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{node.module}" if node.module else package
        else:
            base = node.module or ""
        for alias in node.names:
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            full = f"{base}.{alias.name}"
            self._add(full if full in self.modules else base, node)


def collect_imports() -> tuple[dict[str, Path], list[Import]]:
    files = project_files()
    modules = set(files)
    imports: list[Import] = []
    for module, path in files.items():
        visitor = _Visitor(module, path, modules)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        imports += visitor.found
    return files, list(dict.fromkeys(imports))  # `from m import a, b`: one entry


def _project(imports: list[Import], modules: set[str]) -> list[Import]:
    return [i for i in imports if i.target in modules and i.target != i.source]


def find_cycles(imports: list[Import], modules: set[str]) -> list[list[Import]]:
    """The strongly connected components with more than one module, as their internal edges."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for i in _project(imports, modules):
        edges[i.source].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = [0]

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(modules):
        if v not in index:
            connect(v)
    return [
        [i for i in _project(imports, modules) if i.source in c and i.target in c]
        for c in components
    ]


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


def test_no_import_cycles() -> None:
    files, imports = collect_imports()
    cycles = find_cycles(imports, set(files))
    lines = []
    for edges in cycles:
        members = sorted({i.source for i in edges})
        lines.append("cycle among " + ", ".join(members) + ":")
        lines += [f"  {i.where}: {i.source} imports {i.target}" for i in edges]
    assert not cycles, _report("import cycles (imports inside functions included)", lines)


def test_layers_of_utils_and_nets() -> None:
    files, imports = collect_imports()
    bad = []
    for i in _project(imports, set(files)):
        src, dst = layer(i.source), layer(i.target)
        if src == "script":
            continue  # scripts may use every library layer; test (c) checks script imports
        if dst not in ALLOWED_LAYERS[src]:
            bad.append(f"{i.where}: {i.source} ({src}) imports {i.target} ({dst})")
    allowed = "; ".join(
        f"{k} -> {', '.join(sorted(v)) or 'nothing'}" for k, v in ALLOWED_LAYERS.items()
    )
    assert not bad, _report(f"imports across layers (allowed: {allowed})", bad)


def test_no_script_imports_a_script() -> None:
    files, imports = collect_imports()
    bad = [
        f"{i.where}: {i.source} imports {i.target}"
        for i in _project(imports, set(files))
        if layer(i.source) == "script" and layer(i.target) == "script"
    ]
    assert not bad, _report(
        "scripts importing scripts (move what they share into utils/, or run them as processes)",
        bad,
    )


def test_imports_inside_functions_are_heavy_optional_dependencies_only() -> None:
    _, imports = collect_imports()

    def allowed(name: str) -> bool:
        return any(name == a or name.startswith(a + ".") for a in ALLOWED_LAZY)

    bad = [
        f"{i.where}: {i.target}"
        for i in imports
        if i.in_function and not allowed(i.target) and (i.source, i.target) not in LAZY_TORCH_SIDE
    ]
    assert not bad, _report(
        f"imports inside functions that belong at the top of the file (allowed inside a "
        f"function: {', '.join(ALLOWED_LAZY)}; and {sorted(LAZY_TORCH_SIDE)})",
        bad,
    )


def module_level_closure(start: str, imports: list[Import], modules: set[str]) -> set[str]:
    """The project modules that importing `start` imports (module-level imports only)."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        if not i.in_function and i.target in modules:
            edges.setdefault(i.source, set()).add(i.target)
    seen, todo = {start}, [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            # `import utils.x.y` runs the package __init__ files on the way
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                name = ".".join(parts[:k])
                if name in modules and name not in seen:
                    seen.add(name)
                    todo.append(name)
    return seen


def test_deploy_path_imports_no_training_stack_at_module_level() -> None:
    files, imports = collect_imports()
    modules = set(files)
    assert set(DEPLOY_PATH) <= modules, "a DEPLOY_PATH entry names no module"
    bad = []
    for entry in DEPLOY_PATH:
        closure = module_level_closure(entry, imports, modules)
        for i in imports:
            top = i.target.split(".")[0]
            if i.source in closure and not i.in_function and top in TRAINING_STACK:
                bad.append(f"{i.where}: {i.source} imports {i.target} (reached from {entry})")
    assert not bad, _report(
        "the deployment path imports the training stack at module level (a line box running an "
        "exported model has no torch: import it inside the function that needs it, or move the "
        "code to the torch side, utils.inference.model_predictor / utils.deploy.build)",
        sorted(set(bad)),
    )


def test_the_walk_sees_the_project() -> None:
    """Guard against a walk that silently finds nothing (and so passes everything)."""
    files, imports = collect_imports()
    assert {"train", "nets.registry", "utils.training.trainer", "utils.cli"} <= set(files)
    assert not any(name.startswith("tests") for name in files)
    edges = {(i.source, i.target) for i in _project(imports, set(files))}
    assert ("utils.training.trainer", "utils.metrics") in edges
    assert layer("utils.line.grading") == "line" and layer("utils.cli") == "plain"
    # the deploy-path walk reaches the modules it must check
    closure = module_level_closure("get_miou", imports, set(files))
    assert {"utils.inference.predictor", "utils.deploy.runtimes", "utils.data.voc"} <= closure
    assert "nets" in module_level_closure("train", imports, set(files))
