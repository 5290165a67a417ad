"""The instrument's calibration table: floor, random-init and supervised ceiling per task.

Reads result rows only (no recomputation). For every (task, dataset) that has a floor row
(`floor:input-free`), it shows the floor, the random-init encoder (`random:<arch>` under the task's
main protocol, fraction 1.0, mean over seeds), the task's probe where there is one (recognition's
parameter-free cosine probe, the concatenated-feature probe of attributes / expression:
`references.PROBE_PROTOCOLS`),
and the supervised ceiling (`supervised:<arch>`, protocol `finetune`, fraction 1.0), each with its
95 % bootstrap interval and the wall time its cell took, and then the two checks of the
instrument:

  * random-init beats the floor: the report's floor verdict (score - floor paired over the test
    items, `compare.floor_comparison`, `stats.floor_verdict`), with the task's head and, shown next
    to it, with the probe;
  * room for pre-training: the ceiling is at least twice as far from the floor as random-init,
    i.e. (ceiling − floor) / (random − floor) ≥ 2 in the metric's better direction;

and the ceiling's target on SynthFace where the issue set one. `python -m bench_tasks report` writes
it as `calibration.md` whenever the rows hold a floor, a random-init and a ceiling for a task.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from bench_tasks import stats
from bench_tasks.contracts import uri_scheme
from bench_tasks.plan.references import PROBE_PROTOCOLS
from bench_tasks.tasks._ceiling import ceiling_epochs_for

from .compare import design_difference, design_interval, floor_comparison
from .discrimination import discriminating_power, power_markdown
from .frames import rows_to_frames

# the targets for the supervised ceiling on SynthFace (headline metric, orientation-aware)
CEILING_TARGETS = {"parsing": 70.0, "landmarks": 8.0, "attributes": 85.0, "expression": 80.0, "recognition": 90.0}
# random-init verification must not be readable from colour alone any more
RANDOM_MAX = {"recognition": 65.0}
ROOM_FACTOR = 2.0
# the best value a headline metric can take (percent scores: 100); the room a perfect ceiling would give
PERFECT = {"nme": 0.0, "nme_diag": 0.0}


@dataclass
class Entry:
    value: float
    ci: tuple[float, float] | None
    seconds: float | None
    n: int  # rows (seeds) averaged


@dataclass
class CalibrationRow:
    task: str
    dataset: str
    metric: str
    higher_is_better: bool
    floor: Entry | None = None
    random: Entry | None = None
    probe: Entry | None = None  # the task's probe (references.PROBE_PROTOCOLS), random-init
    probe_protocol: str = ""
    ceiling: Entry | None = None
    random_uri: str = ""
    ceiling_uri: str = ""
    ceiling_epochs: str = ""  # the ceiling rows' `ceiling_epochs` (their profile snapshot), "" = task default
    # the floor verdicts of the report (compare.floor_comparison: score - floor paired over the test
    # items), when the rows allow them; else the entry's interval against the floor value
    random_vs_floor: bool | None = None
    probe_vs_floor: bool | None = None

    def _beats_floor(self, e: Entry | None) -> bool | None:
        if self.floor is None or e is None or e.ci is None:
            return None
        return stats.beats_floor(e.ci, self.floor.value, self.higher_is_better)

    def beats_floor(self) -> bool | None:
        return self.random_vs_floor if self.random_vs_floor is not None else self._beats_floor(self.random)

    def probe_beats_floor(self) -> bool | None:
        return self.probe_vs_floor if self.probe_vs_floor is not None else self._beats_floor(self.probe)

    def _room_at(self, ceiling: float) -> float | None:
        """(ceiling − floor) / (random − floor), both distances in the better direction."""
        if self.floor is None or self.random is None:
            return None
        sign = 1.0 if self.higher_is_better else -1.0
        d_rand = sign * (self.random.value - self.floor.value)
        d_ceil = sign * (ceiling - self.floor.value)
        if d_rand <= 0:
            return float("inf") if d_ceil > 0 else None
        return d_ceil / d_rand

    def room(self) -> float | None:
        """The room the measured ceiling gives."""
        return None if self.ceiling is None else self._room_at(self.ceiling.value)

    def max_room(self) -> float | None:
        """The room a perfect ceiling (PERFECT, else 100) would give: when it is below ROOM_FACTOR, no
        ceiling can pass the room check, however well trained; only a weaker random-init can."""
        room = self._room_at(PERFECT.get(self.metric, 100.0))
        return None if room == float("inf") else room

    def ceiling_meets_target(self) -> bool | None:
        target = CEILING_TARGETS.get(self.task) if self.dataset == "synthface" else None
        if target is None or self.ceiling is None:
            return None
        return self.ceiling.value >= target if self.higher_is_better else self.ceiling.value <= target


def _entry(rows: list[dict], metric: str, frame=None) -> Entry | None:
    vals = [r["metrics"][metric] for r in rows if metric in (r.get("metrics") or {})]
    if not vals:
        return None
    cis = [tuple((r.get("ci") or {}).get(metric) or ()) for r in rows]
    cis = [c for c in cis if len(c) == 2]
    got = None
    if frame is not None and not frame.empty:  # the report's own interval (compare.design_interval)

        sel = frame[frame["key"].isin([r.get("key") for r in rows])]
        got = design_interval(frame, sel, metric) if len(sel) == len(rows) else None
    if got is not None:
        ci = (got[0], got[1])
    elif len(rows) == 1:
        ci = cis[0] if cis else None
    elif len(cis) == len(rows):  # several seeds: the per-seed intervals over test items, averaged (as
        # the main table does); an interval of 3 seeds' mean would leave the test items' noise out
        ci = (float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis])))
    elif len(vals) >= 2:  # seeds without item intervals: the interval of their mean (bootstrap over seeds)
        ci = stats.mean_ci(np.asarray(vals, dtype=float))
    else:
        ci = None
    secs = [((r.get("provenance") or {}).get("wall_time_s")) for r in rows]
    secs = [s for s in secs if s is not None]
    return Entry(float(np.mean(vals)), ci, float(np.mean(secs)) if secs else None, len(vals))


def _floor_word(frame, uri: str, task: str, dataset: str, protocol: str) -> bool | None:
    """The report's floor verdict (compare.floor_comparison) of one random-init encoder, as a bool."""
    if frame is None or frame.empty:
        return None
    got = floor_comparison(frame, uri, task, dataset, protocol, 1.0)
    return None if got is None else got.word == stats.BEATS_FLOOR


def calibration_rows(rows: list[dict]) -> list[CalibrationRow]:

    ok = [r for r in rows if r.get("status") == "ok" and r.get("headline")]
    frame = rows_to_frames(ok)[0] if ok else None
    out: list[CalibrationRow] = []
    pairs = list(dict.fromkeys((r["cell"]["task"], r["cell"]["dataset"]) for r in ok
                               if uri_scheme(r["cell"]["backbone"]) == "floor"))
    for task, dataset in pairs:
        sub = [r for r in ok if r["cell"]["task"] == task and r["cell"]["dataset"] == dataset]
        floor = [r for r in sub if uri_scheme(r["cell"]["backbone"]) == "floor"]
        metric, hib = floor[0]["headline"], bool(floor[0].get("higher_is_better", True))
        row = CalibrationRow(task, dataset, metric, hib, floor=_entry(floor[:1], metric, frame))
        rand = [r for r in sub if uri_scheme(r["cell"]["backbone"]) == "random" and r["cell"]["fraction"] == 1.0]

        probes = [r for r in rand if r["cell"]["protocol"] == PROBE_PROTOCOLS.get(task)]
        heads = [r for r in rand if r["cell"]["protocol"] in ("linear", "frozen")]
        if heads:
            uri = heads[0]["cell"]["backbone"]
            heads = [r for r in heads if r["cell"]["backbone"] == uri
                     and r["cell"]["protocol"] == heads[0]["cell"]["protocol"]]
            row.random, row.random_uri = _entry(heads, metric, frame), f"{uri} ({heads[0]['cell']['protocol']})"
            row.random_vs_floor = _floor_word(frame, uri, task, dataset, heads[0]["cell"]["protocol"])
        if probes:
            row.probe, row.probe_protocol = _entry(probes, probes[0]["headline"], frame), PROBE_PROTOCOLS[task]
            row.probe_vs_floor = _floor_word(frame, probes[0]["cell"]["backbone"], task, dataset,
                                             PROBE_PROTOCOLS[task])
        ceil = [r for r in sub if uri_scheme(r["cell"]["backbone"]) == "supervised" and r["cell"]["fraction"] == 1.0]
        if ceil:
            row.ceiling, row.ceiling_uri = _entry(ceil, metric, frame), ceil[0]["cell"]["backbone"]

            # each row's snapshot of its profile's settings says which epochs it was trained for
            eps = sorted({str(ceiling_epochs_for(((r.get("config") or {}).get("profile") or {}).get("extra"), task)
                              or "task default") for r in ceil})
            row.ceiling_epochs = " / ".join(eps)
        out.append(row)
    return out


def calibrated_tasks(rows: list[dict]) -> set | None:
    """{(task, dataset)} whose calibration passes (random init beats the floor with the task's head,
    the ceiling leaves room >= ROOM_FACTOR); None when the rows hold no calibration at all (every
    task then counts, as before a calibration exists)."""
    cal = [c for c in calibration_rows(rows) if c.random is not None or c.ceiling is not None]
    if not cal:
        return None
    return {(c.task, c.dataset) for c in cal if c.beats_floor() and (c.room() or 0) >= ROOM_FACTOR}


def _fmt(e: Entry | None) -> str:
    if e is None:
        return "—"
    s = f"{e.value:.2f}"
    if e.ci is not None:
        s += f" [{e.ci[0]:.2f}, {e.ci[1]:.2f}]"
    if e.n > 1:
        s += f" (n={e.n})"
    return s


def _probe(c: CalibrationRow) -> str:
    return "—" if c.probe is None else f"{_fmt(c.probe)} ({c.probe_protocol})"


def _secs(e: Entry | None) -> str:
    return "—" if e is None or e.seconds is None else f"{e.seconds:.0f}"


def _yes(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "**no**")


def calibration_markdown(rows: list[dict], profile: str | None = None) -> str | None:
    """The calibration table as markdown, or None when no task has a floor and a random-init row."""
    cal = [c for c in calibration_rows(rows) if c.random is not None or c.ceiling is not None]
    if not cal:
        return None
    ok = [r for r in rows if r.get("status") == "ok" and r.get("headline")]
    frame = rows_to_frames(ok)[0] if ok else None
    lines = [f"## Calibration of the instrument{f' ({profile} profile)' if profile else ''}", "",
             "Floor (best input-free predictor), random-init encoder and supervised ceiling (the same "
             "architecture trained end to end with the task's labels), headline metric, 95 % interval in [ ] "
             "of the mean over seeds from the report's study-design bootstrap (test items, or identities, "
             "plus the cell's seed spread; the same interval as the main table). Times are the wall "
             "time of each cell in seconds.", "",
             "| task | metric | floor | random-init | random-init, probe | ceiling | ceiling epochs | random beats floor (head / probe) | "
             "room (ceil−floor)/(rand−floor) ≥ 2 | ceiling target met | time floor / random / ceiling (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cal:
        room = c.room()
        room_s = "—" if room is None else ("∞" if room == float("inf") else f"{room:.2f}")
        if room is not None:
            room_s += " ✓" if room >= ROOM_FACTOR else " ✗"
            best = c.max_room()
            if room < ROOM_FACTOR and best is not None:
                room_s += f" (a perfect ceiling: {best:.2f})"
        target = CEILING_TARGETS.get(c.task) if c.dataset == "synthface" else None
        tgt = "—" if target is None else f"{_yes(c.ceiling_meets_target())} ({'≥' if c.higher_is_better else '≤'} {target:g})"
        arrow = "↑" if c.higher_is_better else "↓"
        lines.append(f"| {c.task}/{c.dataset} | {c.metric} {arrow} | {_fmt(c.floor)} | {_fmt(c.random)} | "
                     f"{_probe(c)} | {_fmt(c.ceiling)} | {c.ceiling_epochs or '—'} | "
                     f"{_yes(c.beats_floor())} / {_yes(c.probe_beats_floor())} | "
                     f"{room_s} | {tgt} | "
                     f"{_secs(c.floor)} / {_secs(c.random)} / {_secs(c.ceiling)} |")
    uris = sorted({c.random_uri for c in cal if c.random_uri} | {c.ceiling_uri for c in cal if c.ceiling_uri})
    lines += ["", "Encoders: " + ", ".join(f"`{u}`" for u in uris) + ".",
              "Probe: the same frozen random-init encoder read by the task's probe (protocol in ( ): `cosine`, "
              "no trained parameters; `concat`, a logistic regression on the concatenated pooled features, "
              "where the head of `linear` is FaRL's, which averages them first).",
              "Ceiling epochs: the profile's `ceiling_epochs` when the ceiling rows were computed (\"task default\": "
              "the task's fine-tune epochs); a profile that changes it recomputes those rows on the next run."]
    if any(c.room() is not None and c.room() < ROOM_FACTOR for c in cal):
        lines.append("Room in ( ): what a perfect ceiling (NME 0, or 100 %) would give; below "
                     f"{ROOM_FACTOR:g} no ceiling can pass the check, only a random-init closer to the floor.")
    lim = [c for c in cal if c.task in RANDOM_MAX and c.random is not None]
    for c in lim:
        ok = c.random.value <= RANDOM_MAX[c.task]
        lines.append(f"Random-init {c.task} ≤ {RANDOM_MAX[c.task]:g} (no shortcut from colour): "
                     f"{'yes' if ok else '**no**'} ({c.random.value:.2f}).")
    aa = aa_markdown(rows)
    power = power_markdown(discriminating_power(frame)) if frame is not None else None
    if power:
        aa = power + ("\n" + aa if aa else "")
    total = sum(e.seconds for c in cal for e in (c.floor, c.random, c.probe, c.ceiling)
                if e is not None and e.seconds is not None)
    rand_total = sum(c.random.seconds + (c.probe.seconds if c.probe and c.probe.seconds else 0)
                     for c in cal if c.random is not None and c.random.seconds is not None)
    lines.append(f"Wall time: the random-init cells of one encoder and seed {rand_total / 60:.1f} min; "
                 f"every cell of this table {total / 60:.1f} min.")
    return "\n".join(lines) + "\n" + ("\n" + aa if aa else "")


# ----------------------------------------------------------------------------- A/A check
AA_TARGET = 0.05


@dataclass
class AAResult:
    n: int
    false: int
    lines: list  # the false verdicts, as text
    kinds: dict  # {"evaluation seeds": (n, false), "pre-training runs": (n, false)}

    @property
    def rate(self) -> float:
        return self.false / self.n if self.n else float("nan")


def aa_check(rows: list[dict], n_boot: int = 1000) -> AAResult:
    """Comparisons that must be null, under the report's own statistics layer: the same encoder at
    two evaluation seeds (every pair of seeds of every encoder cell), and the same method at two
    pre-training runs (backbones sharing a method label). Each is compared as the report compares
    two encoders (compare.design_difference), with the compared method's own rows left out of the
    seed / run pools (leave-one-out: the check does not lend the spread it tests), and counts as a
    false verdict when its 95 % interval excludes zero."""


    df = rows_to_frames(rows)[0]
    out = AAResult(0, 0, [], {"evaluation seeds": [0, 0], "pre-training runs": [0, 0]})
    if df.empty:
        return out
    enc = df[~df["kind"].isin(["floor", "ceiling"])]
    cells = ["task", "dataset", "protocol", "fraction"]

    def one(kind, a, b, what):
        d = design_difference(df, a, b, a["metric"].iloc[0], n_boot, exclude=(a["method_label"].iloc[0],))
        if d is None:
            return
        out.n += 1
        out.kinds[kind][0] += 1
        if stats.verdict(d) in (stats.BETTER, stats.WORSE):  # THE verdict; "the same" / "not shown" are right
            out.false += 1
            out.kinds[kind][1] += 1
            r = a.iloc[0]
            out.lines.append(f"{what} on {r['task']}/{r['dataset']} `{r['protocol']}` fraction {r['fraction']:g}: "
                             f"{d.delta:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] ({d.covers})")

    for _, g in enc.groupby(["run", *cells], sort=False):
        for s, t in combinations(sorted(set(g["seed"])), 2):
            one("evaluation seeds", g[g["seed"] == t], g[g["seed"] == s], f"{g['method'].iloc[0]} seed {t} − seed {s}")
    for (label, *_), g in enc.groupby(["method_label", *cells], sort=False):
        for u, v in combinations(list(dict.fromkeys(g["run"])), 2):
            one("pre-training runs", g[g["run"] == v], g[g["run"] == u], f"{label}: run `{v}` − run `{u}`")
    return out


def aa_markdown(rows: list[dict]) -> str | None:
    res = aa_check(rows)
    if not res.n:
        return ("## A/A check: comparisons that must be null\n\nNone in these rows: no encoder has two "
                "evaluation seeds and no method two pre-training runs, so the false-verdict rate cannot be "
                "measured here (and every interval covers the test items only).\n")
    ok = res.rate <= AA_TARGET
    parts = ", ".join(f"{k}: {f} of {n}" for k, (n, f) in res.kinds.items() if n)
    L = ["## A/A check: comparisons that must be null", "",
         f"**False-verdict rate {100 * res.rate:.1f} % ({res.false} of {res.n} null comparisons; {parts})** — "
         f"target ≤ {100 * AA_TARGET:.0f} %: {'met' if ok else '**not met**'}.", "",
         "Each null comparison (the same encoder at two evaluation seeds; the same method at two pre-training "
         "runs) goes through the report's statistics layer as any comparison of two encoders does, with the "
         "compared method's own rows left out of the seed / run pools; a verdict of \"better\" or \"worse\" "
         "is false."]
    if res.lines:
        L += ["", "False verdicts:", ""] + [f"- {x}" for x in res.lines]
    return "\n".join(L) + "\n"
