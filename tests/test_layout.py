"""The house's rules, read from the code itself: the stages import in one direction and never in a
circle, no folder holds more than 12 modules, and no module or function outgrows its room."""

from __future__ import annotations

import ast
from pathlib import Path

import riskml

SRC = Path(riskml.__file__).parent

#: the floors from the ground up; a module may import its own package and any floor below its own
FLOORS = [
    ["riskml", "riskml.exceptions", "riskml.factors", "riskml.cells"],   # the spine
    ["riskml.schema"],
    ["riskml.platform"],                                  # the platform's own rules
    ["riskml.simulate"],
    ["riskml.features"],
    ["riskml.measure"],                                   # metrics, tables, points and bands, calibration
    ["riskml.training"],
    ["riskml.explain"],
    ["riskml.monitoring"],
    ["riskml.evaluation"],                                # a training run's evaluation: reads all three above
    ["riskml.io"],                                        # the outside world, from files up to the model store
    ["riskml.batch"],
    ["riskml.cluster"],
    ["riskml.store"],
    ["riskml.sources"],
    ["riskml.generate", "riskml.train", "riskml.predict", "riskml.monitor", "riskml.compare"],  # entry points
    ["riskml.tune"],                                      # trains many times: over the train entry point
]
#: compiled kernels: a loop per row is what they are for; their length is not a function's
KERNELS = {"_kernel", "_raw_kernel", "_add_combo", "_fill_tables", "_flag_numbers", "_in_key_order", "_line_gaps"}


def module_name(path: Path) -> str:
    parts = ["riskml", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py") if "conf" not in p.relative_to(SRC).parts}


def imports(path: Path, known: set[str]) -> set[str]:
    """The riskml modules ``path`` imports, at its top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from pkg import module" imports the module; "from pkg import name" imports the package's face
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n.startswith("riskml"):
                out.add(n)
    return out


def floor_of(name: str) -> tuple[int, str]:
    best = (-1, "")
    for k, floor in enumerate(FLOORS):
        for prefix in floor:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (k, prefix)
    assert best[0] >= 0, f"{name} stands on no floor of FLOORS"
    return best


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_import_runs_down_the_floors_or_stays_in_its_own_package():
    wrong = []
    for name, deps in graph().items():
        (floor, room) = floor_of(name)
        for dep in deps:
            (dep_floor, dep_room) = floor_of(dep)
            if dep_floor > floor or (dep_floor == floor and dep_room != room and dep_room != "riskml"):
                wrong.append(f"{name} -> {dep}")
    assert not wrong, "imports against the floors: " + ", ".join(sorted(wrong))


def circles(g: dict[str, set[str]]) -> list[str]:
    """Every import circle a depth-first walk of ``g`` finds, as ``a -> b -> a``."""
    state, found = {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(g.get(node, ())):
            if dep == "riskml" or dep not in g:  # the package's face only hands on its version
                continue
            if state.get(dep) == "open":
                found.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for name in sorted(g):
        if name not in state:
            visit(name, [name])
    return found


def test_no_module_imports_itself_through_others():
    found = circles(graph())
    assert not found, "import circles: " + "; ".join(found)


def test_rooms_modules_and_functions_keep_their_size():
    folders = {}
    for path in modules().values():
        if path.name != "__init__.py":
            folders.setdefault(path.parent, []).append(path.name)
    assert max(len(v) for v in folders.values()) <= 12, {str(k): len(v) for k, v in folders.items() if len(v) > 12}
    long_modules = {str(p.relative_to(SRC)): n for p in modules().values()
                    if (n := len(p.read_text().splitlines())) > 400}
    assert not long_modules, f"modules over 400 lines: {long_modules}"
    long_functions = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in KERNELS:
                if (n := node.end_lineno - node.lineno + 1) > 80:
                    long_functions.append(f"{path.relative_to(SRC)}:{node.name} ({n})")
    assert not long_functions, "functions over 80 lines: " + ", ".join(sorted(long_functions))


def test_the_rules_catch_what_they_are_for():
    """A broken house fails them: the floors order the stages, and a circle is found."""
    assert floor_of("riskml.simulate.engine")[0] < floor_of("riskml.features.windows")[0]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
    assert circles({"a": {"b"}, "b": set()}) == []
