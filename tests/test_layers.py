"""The import floors point one way: training and the CLI sit on top, device/precision on the ground."""
from __future__ import annotations

import ast
from pathlib import Path

import hyperdomainnet

PACKAGE = Path(hyperdomainnet.__file__).parent
CLI_SHARED = {"app", "console", "options", "train_options"}


def imports() -> dict[str, set[str]]:
    """Module name (``render``, ``cli.generate``, …) → the package modules it imports, anywhere in it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        here = parts[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = here[:len(here) - node.level + 1]
                if node.module:
                    targets.add(".".join(base + [node.module]))
                else:  # ``from . import x``: submodules, or names of the package itself ("" for the root's)
                    module = ".".join(base)
                    targets |= {f"{module}.{a.name}".strip(".") if (PACKAGE.joinpath(*base, a.name).is_dir()
                                or PACKAGE.joinpath(*base, f"{a.name}.py").is_file()) else module
                                for a in node.names}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                absolute = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                targets |= {t.removeprefix("hyperdomainnet").strip(".") for t in absolute
                            if t.startswith("hyperdomainnet")}
        found[name] = targets
    return found


def test_only_training_and_the_cli_import_training() -> None:
    upward = {(m, t) for m, ts in imports().items() for t in ts
              if t.startswith("training") and not m.startswith(("training", "cli"))}
    assert not upward


def test_command_modules_do_not_import_each_other() -> None:
    crossing = {(m, t) for m, ts in imports().items() if m.startswith("cli.") for t in ts
                if t.startswith("cli.") and t.split(".")[1] not in CLI_SHARED}
    assert not crossing


def test_the_ground_floor_and_rendering_stay_below() -> None:
    graph = imports()
    assert graph["device"] <= {"errors", "stylegan2.generator"}
    assert not {t for t in graph["render"] if t.startswith("hypernet")}  # hypernet renders through render
    library = [m for m in graph if not m.startswith("cli") and m != ""]
    assert not [m for m in library if "" in graph[m]]  # nothing imports the package root (its __init__)


def test_no_import_circles() -> None:
    """No module reaches itself through the modules it imports (anywhere in it, functions included;
    package ``__init__`` re-exports aside)."""
    graph = imports()
    packages = {name for name in graph if PACKAGE.joinpath(*name.split("."), "__init__.py").is_file()}
    edges = {m: {t for t in ts if t in graph and t not in packages and t != m} for m, ts in graph.items()}

    def reaches(start: str) -> bool:
        seen, todo = set(), list(edges[start])
        while todo:
            module = todo.pop()
            if module == start:
                return True
            if module not in seen:
                seen.add(module)
                todo.extend(edges[module])
        return False

    assert not sorted(m for m in edges if reaches(m))
