"""The report's "Tuning" section: for every tuned method, the trials of the tuning stage with their
configuration, length, FLOPs and `val` objective, and the trial chosen (from the `tuning` entry of
the method block its rows carry: bench_tasks.plan.tuning.method_block_tuning). Says when the tuned
methods did not get the same number of trials, and which compared methods got no tuning."""

from __future__ import annotations

from bench_tasks.plan.suite import method_of_row


def tuning_blocks(rows: list[dict]) -> dict[str, dict]:
    """{method label: its tuning entry} of the rows' method blocks (the first row of each label)."""
    out: dict[str, dict] = {}
    for r in rows:
        m = method_of_row(r)
        t = m.get("tuning")
        if isinstance(t, dict) and m.get("label") not in out:
            out[str(m.get("label"))] = t
    return out


def _compared_labels(rows: list[dict]) -> list[str]:
    labs = []
    for r in rows:
        m = method_of_row(r)
        if m.get("role") == "main" and m.get("method") in ("paco", "mae", "farl", "mcf") and m.get("label") not in labs:
            labs.append(str(m.get("label")))
    return labs


def _fmt_ov(ov: dict) -> str:
    return ", ".join(f"`{k}={v:g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in ov.items())


def tuning_markdown(rows: list[dict]) -> str | None:
    """The section as Markdown, or None when no row carries a tuning entry."""
    blocks = tuning_blocks(rows)
    if not blocks:
        return None
    first = next(iter(blocks.values()))
    L = ["## Tuning", "",
         f"Each tuned method's trials, each pre-trained once at the study's budget and scored on "
         f"`{first.get('split', 'val')}` only by `{first.get('objective')}` (the mean over "
         f"{', '.join(first.get('tasks') or [])} of the val gain over random init in units of the task's "
         "equivalence margin; bench_tasks/plan/tuning.py); the chosen trial (✓) configured every run of "
         "the method. No test score was read.", ""]
    counts = {lab: len(b.get("trials") or []) for lab, b in blocks.items()}
    if len(set(counts.values())) > 1:
        L += ["**Unequal tuning:** " + ", ".join(f"{k}: {v} trials" for k, v in counts.items()) + ".", ""]
    else:
        L += [f"Every tuned method had {next(iter(counts.values()))} trials.", ""]
    untuned = [lab for lab in _compared_labels(rows) if lab not in blocks]
    if untuned:
        L += ["Not tuned (their configuration is the suite's default): " + ", ".join(untuned) + ".", ""]
    tasks = list(first.get("tasks") or [])
    for lab, b in blocks.items():
        L += [f"**{lab}**", "",
              "| trial | configuration | steps | TFLOP | val objective | " + " | ".join(tasks) + " | chosen |",
              "|---|---|---|---|---|" + "---|" * len(tasks) + "---|"]
        for t in b.get("trials") or []:
            obj = t.get("objective")
            per = t.get("per_task") or {}
            L.append(f"| {t.get('name')} | {_fmt_ov(t.get('overrides') or {})} | {t.get('steps')} | "
                     f"{float(t.get('flops') or 0) / 1e12:.2f} | "
                     + ("failed / no score" if obj is None else f"{obj:+.3f}") + " | "
                     + " | ".join("—" if per.get(k) is None else f"{per[k]:+.2f}" for k in tasks)
                     + f" | {'✓' if t.get('name') == b.get('chosen') else ''} |")
        L.append("")
    return "\n".join(L)
