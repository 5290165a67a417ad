"""FaRL's protocols as registered protocol objects: `farl-frozen` (FaRL's `freeze_backbone`
optimizer file) and `farl-refine` (`refine_backbone`), serving the dense tasks (parsing, landmarks).
A dense task asks the registry for the cell's protocol (bench_tasks.tasks._dense_task) and hands the
cell to it; the settings are FaRL's files (settings.farl_settings), the loop `loop.run_farl`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench_tasks.contracts import CellProtocol
from bench_tasks.protocols.farl.loop import cell_image_size, run_farl
from bench_tasks.protocols.farl.settings import OVERRIDABLE, PROTOCOL_NAMES
from bench_tasks.registry import PROTOCOLS


@dataclass(frozen=True)
class FarlProtocol(CellProtocol):
    name: str
    tasks: ClassVar[tuple[str, ...]] = ("parsing", "landmarks")

    def setting_keys(self) -> tuple[str, ...]:
        """`farl_<key>`: the FaRL settings a profile may override (recorded in the row)."""
        return tuple(f"farl_{k}" for k in OVERRIDABLE)

    def cell_image_size(self, cell, profile) -> int:
        return cell_image_size(cell, profile)

    def run(self, ctx, task: str):
        return run_farl(ctx, task)


for _name in PROTOCOL_NAMES:
    PROTOCOLS.register(_name)(FarlProtocol(_name))
