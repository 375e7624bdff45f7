"""Run by the interpreter of a user's installation, isolated from the work tree:

    <venv>/bin/python -I tests/e2e/installed_probe.py events orchestrator

Imports every module of the named installed packages (found with ``pkgutil.walk_packages``,
never listed by hand) and prints one JSON report on stdout: where the packages were imported
from, every module imported, every failure (the module, the exception, the missing module and
the import statement that needed it), and the distributions installed beside them.

Files that are not imported as modules are checked statically instead: a ``__main__`` module
(importing it runs the program) and the scripts that are not part of a package (Alembic's
``env.py`` and revisions), whose every import statement must resolve.

Only the standard library is used here: the environment under test has nothing else to offer.
The test process imports ``runtime_imports`` from this file too, to scan the sources.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import platform
import sys
import traceback
from collections.abc import Iterator
from typing import Any

# --- which import statements run -------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
               for n in names)


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs when the module is used: not those under
    ``if TYPE_CHECKING:``, nor optional ones in a ``try`` whose handler catches ImportError."""
    if isinstance(tree, ast.Import | ast.ImportFrom):
        yield tree
        return
    if isinstance(tree, ast.If) and _is_type_checking(tree.test):
        for node in tree.orelse:
            yield from runtime_imports(node)
        return
    if isinstance(tree, ast.Try) and any(_catches_import_error(h) for h in tree.handlers):
        for node in [*tree.handlers, *tree.orelse, *tree.finalbody]:
            yield from runtime_imports(node)
        return
    for node in ast.iter_child_nodes(tree):
        yield from runtime_imports(node)


# --- importing -------------------------------------------------------------------------------


def _failure(module: str, error: BaseException, roots: list[str]) -> dict[str, Any]:
    """The module, the error, the missing module if one is, and the innermost line of the
    installed packages the error went through (the import statement that needed it)."""
    where = None
    for frame in traceback.extract_tb(error.__traceback__):
        filename = os.path.abspath(frame.filename)
        for root in roots:
            if filename.startswith(root + os.sep):
                relative = os.path.relpath(filename, os.path.dirname(root))
                where = f"{relative}:{frame.lineno}: {(frame.line or '').strip()}"
    return {
        "module": module,
        "error": f"{type(error).__name__}: {error}",
        "missing": error.name if isinstance(error, ModuleNotFoundError) else None,
        "where": where,
    }


def _check_statically(
        module: str, path: str, package: str | None) -> Iterator[tuple[str, str, str | None]]:
    """Resolve every import statement of a file that is not imported here: yields
    (statement, error, missing module or None) for each one that does not resolve."""
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read(), path)
    for node in runtime_imports(tree):
        statement = ast.unparse(node)
        try:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
                continue
            if node.level:
                if package is None:
                    yield statement, f"relative import in {module}, not in a package", None
                    continue
                base = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                   package)
            else:
                base = node.module or ""
            imported = importlib.import_module(base)
            for alias in node.names:
                if alias.name != "*" and not hasattr(imported, alias.name):
                    importlib.import_module(f"{base}.{alias.name}")
        except BaseException as error:
            missing = error.name if isinstance(error, ModuleNotFoundError) else None
            yield statement, f"{type(error).__name__}: {error}", missing


def _walk(package: Any, top: str) -> Iterator[tuple[str, str | None]]:
    """(module name, file) of the package and every module below it."""
    yield top, getattr(package, "__file__", None)
    for info in pkgutil.walk_packages(package.__path__, top + ".", onerror=lambda name: None):
        directory = getattr(info.module_finder, "path", None)
        leaf = info.name.rsplit(".", 1)[-1]
        path = None
        if directory:
            path = os.path.join(directory, leaf, "__init__.py") if info.ispkg \
                else os.path.join(directory, leaf + ".py")
        yield info.name, path


def probe(packages: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {"executable": sys.executable, "prefix": sys.prefix, "path": sys.path,
                              "packages": {}, "imported": [], "checked": [], "files": [],
                              "failures": []}
    for top in packages:
        try:
            package = importlib.import_module(top)
        except BaseException as error:
            report["failures"].append(_failure(top, error, []))
            continue
        roots = [os.path.abspath(p) for p in package.__path__]
        report["packages"][top] = roots
        walked: dict[str, str] = {}  # file -> module name
        for name, path in _walk(package, top):
            if path:
                walked[os.path.abspath(path)] = name
            if name.rsplit(".", 1)[-1] == "__main__":
                continue  # importing it runs the program: checked statically below
            try:
                importlib.import_module(name)
            except BaseException as error:
                report["failures"].append(_failure(name, error, roots))
                continue
            report["imported"].append(name)
        # Every other .py file: __main__ modules, and the scripts outside any package (Alembic's
        # env.py and revisions), each import statement of which must resolve.
        for root in roots:
            for directory, subdirs, filenames in os.walk(root):
                subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
                for filename in sorted(f for f in filenames if f.endswith(".py")):
                    path = os.path.abspath(os.path.join(directory, filename))
                    relative = os.path.relpath(path, os.path.dirname(root))
                    report["files"].append(relative)
                    name = walked.get(path)
                    if name is not None and not name.endswith("__main__"):
                        continue  # imported above
                    package_name = name.rpartition(".")[0] if name else None
                    report["checked"].append(relative)
                    for statement, error, missing in _check_statically(
                            name or relative, path, package_name):
                        report["failures"].append({"module": name or relative, "error": error,
                                                   "missing": missing,
                                                   "where": f"{relative}: {statement}"})
    report["distributions"] = [
        {"name": d.metadata["Name"], "version": d.version, "requires": d.requires or []}
        for d in importlib.metadata.distributions()]
    report["import_names"] = importlib.metadata.packages_distributions()
    report["marker_environment"] = marker_environment()
    return report


def marker_environment() -> dict[str, str]:
    """This interpreter's values for environment markers (PEP 508), as ``packaging`` has them."""
    version = sys.implementation.version
    implementation_version = f"{version.major}.{version.minor}.{version.micro}"
    if version.releaselevel != "final":
        implementation_version += version.releaselevel[0] + str(version.serial)
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": implementation_version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


if __name__ == "__main__":
    json.dump(probe(sys.argv[1:]), sys.stdout)
