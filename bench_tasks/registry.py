"""Small registries (one per kind): adding a task, dataset, backbone scheme, head or a task's
protocol is one file with a decorator, e.g.

    @TASKS.register("attributes")
    class AttributesTask(Task): ...

`python -m bench_tasks list` prints every registry. Modules are imported by
`bench_tasks.registry.load_all()` so registration happens on import.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Callable
from typing import Any


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(obj):
            if name in self._items and self._items[name] is not obj:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        load_all()
        if name not in self._items:
            broken = "".join(f"\n  {mod} failed to import: {err}" for mod, err in IMPORT_ERRORS.items())
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._items))}"
                           + (f"; modules that failed to import:{broken}" if broken else ""))
        return self._items[name]

    def names(self) -> list[str]:
        load_all()
        return sorted(self._items)

    def items(self):
        load_all()
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        load_all()
        return name in self._items


TASKS = Registry("task")
DATASETS = Registry("dataset")
BACKBONES = Registry("backbone scheme")
HEADS = Registry("head")
PROTOCOLS = Registry("protocol")  # protocol objects (bench_tasks.contracts.CellProtocol)


def protocols_serving(task: str) -> list[tuple[str, Any]]:
    """[(name, protocol)] of the registered protocols (PROTOCOLS) that serve task `task`."""
    return [(name, p) for name, p in PROTOCOLS.items() if task in getattr(p, "tasks", ())]


def protocol_for(task: str, protocol: str) -> Any | None:
    """The registered protocol object named `protocol` when it serves `task`, else None (a protocol the
    task implements itself)."""
    return dict(protocols_serving(task)).get(protocol)


class TaskProtocols:
    """A task's `protocols` (class attribute) read from the registry: the task's own
    (`own_protocols`), then every registered protocol that serves it (protocols_serving), so a
    protocol module registers itself and the tasks it names accept it."""

    def __get__(self, obj, owner) -> tuple[str, ...]:
        own = tuple(owner.own_protocols)
        task = getattr(owner, "name", None)
        return (*own, *(name for name, _ in protocols_serving(task) if name not in own)) if task else own

_LOADED = False
IMPORT_ERRORS: dict[str, str] = {}  # module -> "ExceptionType: message" for modules that failed


def load_all() -> None:
    """Import every module of the registry packages once, so their decorators run."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for pkg_name in ("bench_tasks.backbones", "bench_tasks.datasets", "bench_tasks.tasks",
                     "bench_tasks.heads", "bench_tasks.protocols"):
        pkg = importlib.import_module(pkg_name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name.startswith("_"):
                continue
            name = f"{pkg_name}.{mod.name}"
            try:
                importlib.import_module(name)
            except Exception as err:  # one broken entry must not take the others down
                IMPORT_ERRORS[name] = f"{type(err).__name__}: {err}"
                print(f"warning: {name} failed to import ({IMPORT_ERRORS[name]}); its entries are "
                      "unavailable", file=sys.stderr)


def load_registries() -> None:
    load_all()
    for mod in filter(None, (m.strip() for m in os.environ.get("BENCH_TASKS_PLUGINS", "").split(","))):
        importlib.import_module(mod)
