"""`python -m bench_tasks preview`'s flags; the drawing (bench_tasks.cli.preview) loads when it runs."""

from __future__ import annotations


def cmd_preview(args) -> int:
    # lazy: the readers and SynthFace's generator load when a preview is drawn, not on --help
    from bench_tasks.cli.preview import cmd_preview as draw

    return draw(args)


def add_preview_parser(sub) -> None:
    pp = sub.add_parser("preview", help="draw a grid of items of a dataset with their labels, as the benchmark "
                                        "reads them (masks, points, attributes, expressions, pairs)")
    pp.add_argument("dataset", nargs="?", choices=["synthface"], help="synthface (same as --datasets synthface)")
    pp.add_argument("--datasets", help="comma list of registered datasets (see `list`), e.g. 300w,celeba")
    pp.add_argument("--data-root", action="append",
                    help="a folder holding one sub-folder per dataset, the dataset's own folder, or name=path pairs")
    pp.add_argument("--split", default="test", help="which split to draw (default test)")
    pp.add_argument("--task", help="which of the dataset's tasks (default its first)")
    pp.add_argument("--out", help="PNG to write (default <dataset>_preview.png; with several datasets "
                                  "<stem>_<dataset>.png)")
    pp.add_argument("--n", type=int, help="items (pairs) to draw (default 8; SynthFace 16)")
    pp.add_argument("--size", type=int, default=128, help="image size the items are read at (default 128)")
    pp.add_argument("--seed", type=int, default=0, help="SynthFace generation seed")
    pp.set_defaults(func=cmd_preview)
