"""What the commands share: the backbone schemes of every --help, durations; light enough for
`--help`, `list` and `status` (no torch).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

from bench_tasks.plan.durations import fmt_duration
from bench_tasks.plan.options import SYNTHFACE

__all__ = ["SYNTHFACE"]


def _first_line(obj) -> str:
    """The first sentence of a docstring's first paragraph (joined across its wrapped lines, so a
    description is never cut mid-sentence)."""
    return first_sentence(getattr(obj, "__doc__", None))


def first_sentence(doc: str | None) -> str:
    doc = (doc or "").strip()
    if not doc:
        return ""
    para = " ".join(ln.strip() for ln in doc.split("\n\n")[0].splitlines())
    return para.split(". ")[0] + "." if ". " in para else para


def _registered_in(path: str, registry: str = "BACKBONES") -> list[tuple[str, str]]:
    """[(name, description)] of the `@<registry>.register("name")` decorators in a module's source,
    read without importing it (the description: the module's docstring, else the function's)."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    module_doc = first_sentence(ast.get_docstring(tree))
    out = []
    for node in ast.walk(tree):
        for deco in getattr(node, "decorator_list", ()):
            if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "register"
                    and isinstance(deco.func.value, ast.Name) and deco.func.value.id == registry
                    and deco.args and isinstance(deco.args[0], ast.Constant)):
                name = str(deco.args[0].value)
                out.append((name, module_doc or first_sentence(ast.get_docstring(node)) or name))
    return out


def backbone_schemes() -> list[tuple[str, str]]:
    """[(scheme, description)] of the backbone URI schemes, bench_tasks/backbones/ and the plug-in
    modules of BENCH_TASKS_PLUGINS, read from their source (no torch: every --help shows them)."""
    found: dict[str, str] = {}
    spec = importlib.util.find_spec("bench_tasks.backbones")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for mod in sorted(Path(folder).glob("*.py")):
            if not mod.name.startswith("_"):
                found.update(_registered_in(str(mod)))
    for origin in plugin_files():
        found.update(_registered_in(str(origin)))
    return sorted(found.items())


def plugin_files() -> list[Path]:
    """The source files of the plug-in modules named by BENCH_TASKS_PLUGINS (found, not imported)."""
    out = []
    for name in filter(None, (m.strip() for m in os.environ.get("BENCH_TASKS_PLUGINS", "").split(","))):
        try:
            origin = getattr(importlib.util.find_spec(name), "origin", None)
        except (ImportError, ValueError):
            origin = None
        if origin:
            out.append(Path(origin))
    return out


def backbone_schemes_help() -> str:
    """The backbone URI schemes, one line each (for every verb's --help)."""
    schemes = backbone_schemes()
    if not schemes:
        return ""
    return "\n".join(["backbone URIs (--backbones, comma list; `python -m bench_tasks list` for more):"]
                     + [f"  {what}" for _, what in schemes])


def fmt_elapsed(s: float) -> str:
    return fmt_duration(s)
