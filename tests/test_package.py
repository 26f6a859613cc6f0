"""Package hygiene, read from the source with ``ast``: no import circle between hififace's modules, rooms stacked in
floors (each importing only its own floor and the floors below), and a ceiling on imports of hififace hidden inside
functions.

The floors are the README's Layout section; the ceiling counts what may stay inside functions: the command line
(lazy so that ``--help`` is fast), the package's lazy facade and the Lightning modules training/build.py loads only
when a run starts.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hififace"

#: Floors, bottom to top (the README's Layout section). A module may import modules of its own room, of the other
#: rooms of its floor, and of any floor below. ``__init__`` is the package's own module (the public API).
FLOORS: list[tuple[str, ...]] = [
    ("_version", "errors"),
    ("utils",),
    ("provenance",),  # the label, watermark and content credentials every writer applies
    ("media",),  # image and video files in and out (the one decoder, the one writer), in-memory image kinds
    ("nn",),
    ("weights",),  # reading and writing files only
    ("config", "models"),
    ("losses",),
    ("converters",),  # the converters of foreign weights, above models and losses
    ("face", "restore"),  # per-face operations (the one face cropper); face restorers
    ("data",),  # dataset preparation (uses the cropper) and training data
    ("inference", "training"),
    ("metrics", "export", "app", "live"),
    ("__init__", "api"),  # the package's public API
    ("cli",),
]

#: Import statements of hififace modules inside functions, per room: at most this many (lower a number when you
#: remove some, never raise one). What may stay: cli/ (``--help`` is fast), the package's lazy facade (__init__),
#: training/build.py's Lightning modules (loaded when a run starts), and face/'s torch networks (parse.py's neural
#: parsers, landmarks.py's ReconNet backend), which preparation workers must not import (see the test below).
FUNCTION_IMPORTS_AT_MOST = {"__init__": 3, "cli": 92, "face": 6, "training": 3}


# ---------------------------------------------------------------------------------------------- reading the source
def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = ["hififace", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(name: str) -> str:
    """The module a dotted name lives in (``hififace.nn.blocks.ResBlock`` -> ``hififace.nn.blocks``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


class Import:
    def __init__(self, target: str, line: int, in_function: bool, type_only: bool):
        self.target, self.line, self.in_function, self.type_only = target, line, in_function, type_only


def _imports(module: str) -> tuple[list[Import], int]:
    """The hififace modules ``module`` imports, and how many of its import statements sit inside functions."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found, in_functions = [], 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            names = [f"{full}.{a.name}" if f"{full}.{a.name}" in MODULES else full for a in node.names]
        else:
            continue
        names = [n for n in names if n.split(".")[0] == "hififace"]
        if not names:
            continue
        in_function = type_only = False
        up = node
        while up in parent:
            up = parent[up]
            in_function |= isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            type_only |= isinstance(up, ast.If) and "TYPE_CHECKING" in ast.unparse(up.test)
        in_functions += in_function
        found += [Import(_resolve(n), node.lineno, in_function, type_only) for n in names]
    return found, in_functions


IMPORTS = {m: _imports(m) for m in MODULES}



# ---------------------------------------------------------------------------------------------- circles
def _graph(type_only: bool) -> dict[str, set[str]]:
    """Module -> the hififace modules it imports (lazy, function-level imports included; ``type_only``: also those
    under ``if TYPE_CHECKING:``, which never run)."""
    return {m: {i.target for i in IMPORTS[m][0] if i.target != m and (type_only or not i.type_only)} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = _graph(type_only=False)
    assert "hififace.face.landmarks" in graph and "hififace.face.align" in graph["hififace.face.landmarks"]
    assert _cycles(graph) == []


def test_no_circle_even_through_type_annotations():
    found = _cycles(_graph(type_only=True))
    assert not found, f"import circles (TYPE_CHECKING imports included): {found}"


# ---------------------------------------------------------------------------------------------- floors
def test_every_room_has_a_floor():
    floor_of = {room for floor in FLOORS for room in floor}
    rooms = {_room(m) for m in MODULES}
    assert rooms <= floor_of, f"rooms without a floor in FLOORS (and the README's Layout): {sorted(rooms - floor_of)}"


def _breaches() -> dict[tuple[str, str], list[int]]:
    floor = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}
    found: dict[tuple[str, str], list[int]] = {}
    for module, (imports, _) in IMPORTS.items():
        for imp in imports:
            if floor[_room(imp.target)] > floor[_room(module)]:
                found.setdefault((module, imp.target), []).append(imp.line)
    return found


def test_no_room_imports_a_room_above_it():
    found = _breaches()
    breaches = sorted(f"{a} imports {b} (line {', '.join(map(str, lines))})" for (a, b), lines in found.items())
    assert not breaches, "imports of a higher floor (see FLOORS): " + "; ".join(breaches)


def function_level_imports() -> Counter:
    """Import statements of hififace modules inside functions, per room."""
    counts: Counter = Counter()
    for module, (_, in_functions) in IMPORTS.items():
        counts[_room(module)] += in_functions
    return +counts


def test_imports_inside_functions_do_not_grow():
    counts = function_level_imports()
    grown = {room: (n, FUNCTION_IMPORTS_AT_MOST.get(room, 0)) for room, n in counts.items()
             if n > FUNCTION_IMPORTS_AT_MOST.get(room, 0)}
    assert not grown, (f"more imports inside functions than allowed (room: (now, allowed)): {grown}; import at the "
                       f"top of the module (lazy only for optional heavy dependencies, and in cli/)")
    assert sum(n for room, n in counts.items() if room not in ("cli", "__init__")) <= 24


def test_the_reader_sees_imports_of_every_kind():
    """Relative and absolute, module-level, function-level and TYPE_CHECKING imports."""
    video = [(imp.target, imp.in_function, imp.type_only) for imp in IMPORTS["hififace.inference.video"][0]]
    assert ("hififace.media.video", False, False) in video  # from .ffmpeg import ...
    assert ("hififace.face.detect", False, True) in video  # under TYPE_CHECKING
    assert ("hififace.inference.pipeline", False, False) in video  # the video module takes a FaceSwapper
    functions = [(imp.target, imp.in_function) for imp in IMPORTS["hififace.cli.video"][0]]
    assert ("hififace.inference.video", True) in functions  # from ..inference.video import ... inside run()
    assert {imp.target for imp in IMPORTS["hififace.nn.blocks"][0]} == {"hififace.nn.fast"}
    assert {imp.target for imp in IMPORTS["hififace.nn.fast"][0]} == set()  # the fast paths know nothing of the blocks


def test_preparation_and_face_tools_do_not_import_torch():
    """Dataset preparation spawns a worker per core: they must not pay seconds each for torch unless a neural parser
    or the ReconNet landmarker is asked for (the lazy imports of face/parse.py, face/landmarks.py, data/__init__)."""
    import subprocess
    import sys

    code = ("import sys; import hififace.data.prepare, hififace.face.cropper, hififace.media.images, hififace.cli.main; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
