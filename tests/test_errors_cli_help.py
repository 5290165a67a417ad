"""Issue 15: `list` descriptions are never cut mid-sentence; every verb's --help lists the backbone
schemes."""

from __future__ import annotations

import pytest

from bench_tasks.cli.app import main
from bench_tasks.cli.common import _first_line
from bench_tasks.registry import BACKBONES


@pytest.mark.parametrize("verb", [[], ["list"], ["run"], ["preview"], ["report"]])
def test_every_help_lists_the_backbone_schemes(capsys, verb):
    with pytest.raises(SystemExit) as e:
        main([*verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for scheme in BACKBONES.names():
        assert f"`{scheme}:" in out, scheme


def test_list_descriptions_are_whole_sentences(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    section = out.split("Backbone schemes")[1].split("\n\nHeads")[0]
    rows = [ln for ln in section.splitlines()[3:] if ln.strip()]
    assert len(rows) == len(BACKBONES.names())
    for ln in rows:
        assert ln.rstrip().endswith((".", ")")), ln
    assert "timm's own pretrained weights." in section


def test_first_line_joins_wrapped_lines():
    def f():
        """A sentence that wraps
        onto a second line. Second sentence."""

    assert _first_line(f) == "A sentence that wraps onto a second line."
