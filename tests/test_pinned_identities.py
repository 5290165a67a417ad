"""Cell keys and settings hashes do not move when the code is reorganised.

A row is found by its `Cell.key()` and recomputed when its `settings_hash` differs from the one the
current code computes (bench_tasks.plan.profiles.settings_hash), so a refactoring that changed either
would silently recompute, or orphan, every stored row. Both are SHA-1 digests of settings, not
floats, so the strings below hold on every machine; they were computed by the code that wrote the
committed rows. A change that is meant to alter a task's settings updates them here on purpose (the
learning-rate grids chosen on val and the dense pilots' share changed every task's settings).
"""

from __future__ import annotations

import pytest

from bench_tasks.contracts import Cell
from bench_tasks.plan.profiles import get_profile, load_profile, settings_hash

PINNED = [
    # (backbone, task, dataset, protocol, fraction, seed, profile), Cell.key(), settings_hash
    (("random:vit_tiny", "attributes", "synthface", "linear", 1.0, 0, "smoke"), "7e68341df5a7f8d1", "a8a1fed19223"),
    (("random:vit_tiny", "expression", "synthface", "finetune", 0.1, 1, "cpu"), "54c53e3f7b43864d", "2118877dffa1"),
    (("random:vit_tiny", "parsing", "synthface", "frozen", 1.0, 0, "smoke"), "2fde5e7ba0c9d94f", "016e30fce3bb"),
    (("random:vit_tiny", "landmarks", "synthface", "frozen", 1.0, 2, "gpu"), "55c2add4557dd1a3", "19d4df0ee748"),
    (("random:vit_tiny", "recognition", "synthface", "linear", 1.0, 0, "cpu"), "6caa34ff315d4719", "31eef3683dc4"),
    (("supervised:vit_tiny", "parsing", "synthface", "finetune", 1.0, 0, "cpu"), "4ab485c52180cd70", "ed3f555cc0f6"),
    (("floor:input-free", "attributes", "synthface", "floor", 1.0, 0, "smoke"), "fa10f3a979dd0b01", "6d877a4e6d9c"),
    (("farl:FaRL-Base-Patch16-LAIONFace20M-ep64.pth", "parsing", "lapa", "farl-refine", 1.0, 0, "paper"),
     "6318a5d8409596fd", "b6c58a787bae"),
    (("paco_fr:runs/cpu/paco/encoder.safetensors", "landmarks", "wflw", "farl-frozen", 1.0, 0, "small"),
     "95a8e68279be615c", "4896998bd8c1"),
]


@pytest.mark.parametrize("fields,key,settings", PINNED, ids=[f"{c[0][1]}-{c[0][3]}-{c[0][6]}" for c in PINNED])
def test_cell_key_and_settings_hash_are_pinned(fields, key, settings):
    cell = Cell(*fields)
    assert cell.key() == key
    assert settings_hash(cell, get_profile(cell.profile)) == settings
    assert cell.key() == Cell(*fields).key()  # the key is a function of the fields alone


def test_overrides_change_exactly_the_pinned_hashes():
    profile = load_profile("cpu", ["linear.lr_head=0.02", "dense_channels=64"], register=False)
    attributes = Cell("random:vit_tiny", "attributes", "synthface", "linear", 1.0, 0, "cpu")
    parsing = Cell("random:vit_tiny", "parsing", "synthface", "frozen", 1.0, 0, "cpu")
    assert settings_hash(attributes, profile) == "91fa3a4010fa"
    assert settings_hash(parsing, profile) == "fd1139917b4c"
    assert settings_hash(attributes, profile) != settings_hash(attributes, get_profile("cpu"))
