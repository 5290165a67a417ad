"""`report`'s flags (python -m bench_tasks report, python -m bench_tasks.report), without loading
the report's tables and figures."""

from __future__ import annotations

import argparse


def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    ap.add_argument("--profile", default=None, help="profile name (default: inferred from the rows, else smoke)")
    ap.add_argument("--results", nargs="+", default=None,
                    help="results JSONL file(s) or folder(s) (default results/<profile>.jsonl)")
    ap.add_argument("--out", default=None, help="output folder (default reports/<profile>)")
    ap.add_argument("--runs", default="runs", help="pre-training runs folder, read only for the codebook "
                                                 "reconstruction figure (default runs)")
    ap.add_argument("--reported", default=None, help="CSV of published numbers (default: the packaged one)")
    ap.add_argument("--label-scaling", nargs="+", default=None, metavar="RESULTS",
                    help="results of a label-scaling study (cells run with --set synthface_train=N): a table "
                         "of floor, random-init and ceiling against the labelled-set size, appended to "
                         "calibration.md (default results/<profile>_label_scaling/ when it exists)")
    ap.add_argument("--no-reconstruct", action="store_true",
                    help="skip the codebook reconstruction figure (it calls paco_fr.engine.reconstruct)")
    return ap
