"""Tables from result rows: main table (paper style), per-protocol tables, ablation tables.

One module per piece: `frames` (rows -> data frames, `aggregate`), `table` (the table model),
`columns` (the columns and rows the tables share), `main_table`, `protocol_tables`,
`ablation_tables`, `table_formats` (Markdown, LaTeX, CSV). This module names them all in one
place. Values are mean ± sample std (ddof=1) over seeds; the std is omitted with one seed.
"""

from __future__ import annotations

from .ablation_tables import ablation_deltas, build_ablation_tables
from .columns import (
    POST_HOC,
    SECONDARY,
    add_gain_columns,
    add_references,
    add_variant_columns,
    measured_table,
)
from .frames import RUNS_PREFIX, aggregate, cell_label, pick_fraction, pick_protocol, rows_to_frames
from .main_table import build_main_table
from .protocol_tables import build_protocol_tables
from .table import (
    BOLD_FOOTNOTE,
    FLAG,
    FLAG_FOOTNOTE,
    GAIN_COL,
    MEAN_GAIN,
    MISSING,
    VARIANT_ORDER,
    Col,
    Table,
    TCell,
    TRow,
    fmt_num,
    mark_best,
)
from .table_formats import tex_escape, to_latex, to_long_frame, to_markdown, to_wide_frame

__all__ = ["BOLD_FOOTNOTE", "FLAG", "FLAG_FOOTNOTE", "GAIN_COL", "MEAN_GAIN", "MISSING", "POST_HOC", "RUNS_PREFIX",
           "SECONDARY", "VARIANT_ORDER", "Col", "TCell", "TRow", "Table", "ablation_deltas", "add_gain_columns",
           "add_references", "add_variant_columns", "aggregate", "build_ablation_tables", "build_main_table",
           "build_protocol_tables", "cell_label", "fmt_num", "mark_best", "measured_table", "pick_fraction",
           "pick_protocol", "rows_to_frames", "tex_escape", "to_latex", "to_long_frame", "to_markdown",
           "to_wide_frame"]
