"""The package's shape (docs/architecture.md): imports only point down the layers, counting those
inside functions, and functions stay short enough to read."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dpa2_jax"

# Bottom to top; a module may import its own room and rooms of lower layers only.
LAYERS = [
    {"typing", "errors"},
    {"options"},
    {"nn"},
    {"data"},
    {"graph"},
    {"descriptor", "fitting"},
    {"model"},
    {"io"},
    {"md", "train", "metrics"},
    {"distill"},
    {"__init__"},  # the public API: dpa2_jax.load, Potential, DPA2Calculator
    {"cli"},
]
LAYER = {room: k for k, rooms in enumerate(LAYERS) for room in rooms}
LONGEST = 80  # lines of a function body, docstring aside
LONGEST_IN = {"train": 60}


def _room(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: pathlib.Path):
    """(line, imported room) of every import of the package's own modules in ``path``."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = [f"{name}.{a.name}" for a in node.names] if name == "dpa2_jax" else [name]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "dpa2_jax" and len(parts) > 1:
                room = parts[1] if parts[1] in LAYER else "__init__"
                yield node.lineno, room


def test_every_room_has_a_layer():
    rooms = {_room(p) for p in _modules()}
    assert rooms <= set(LAYER), f"rooms without a layer: {sorted(rooms - set(LAYER))}"


def test_imports_only_point_down():
    upward = [
        f"{p.relative_to(PACKAGE.parent)}:{line} imports {room}"
        for p in _modules()
        for line, room in _imports(p)
        if room != _room(p) and LAYER[room] >= LAYER[_room(p)]
    ]
    assert not upward, "\n".join(upward)


def _body_lines(fn: ast.FunctionDef) -> int:
    body = fn.body
    first = body[0]
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    start = first.end_lineno + 1 if is_doc and len(body) > 1 else first.lineno
    return fn.end_lineno - start + 1


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_are_short(path):
    limit = LONGEST_IN.get(_room(path), LONGEST)
    long = [
        f"{node.name} ({_body_lines(node)} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _body_lines(node) > limit
    ]
    assert not long, f"longer than {limit} lines: {long}"
