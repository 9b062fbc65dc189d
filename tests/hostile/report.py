"""Compare what each path recorded for every corpus file with the design; print it as markdown.

:func:`main` (``python benchmarks/reliability_corpus.py``) builds the corpus in a temporary directory, runs it through
``skysift run`` and the emulated AWS system (each capped, see :mod:`hostile.runners`) and prints
the corpus table of docs/RELIABILITY.md, so the document is regenerated, never hand-typed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .corpus import Entry, write_corpus
from .runners import MEMORY_CAP_BYTES, Outcome, PathRun, run_emulated, run_local


def _verdict(outcome: Outcome | None) -> str:
    if outcome is None:
        return "missing"
    return outcome.status if outcome.reason is None else f"{outcome.status} ({outcome.reason})"


@dataclass
class Row:
    entry: Entry
    local: Outcome | None
    aws: Outcome | None

    def problems(self) -> list[str]:
        """Every way this file's outcomes differ from the design or from each other."""
        e, found = self.entry, []
        for path, outcome in (("local", self.local), ("aws", self.aws)):
            if outcome is None:
                found.append(f"{path}: no images row")
                continue
            if outcome.rows != e.rows and outcome.status != "missing":
                found.append(f"{path}: {outcome.rows} images rows, designed {e.rows} (one per image HDU)")
            if outcome.verdict != e.expected:
                found.append(f"{path}: {_verdict(outcome)}, designed {_verdict(Outcome(*e.expected))}"
                             + (f" [{outcome.message[:160]}]" if outcome.message else ""))
            if e.status == "ok" and outcome.status == "ok":
                if outcome.n_sources < e.min_sources:
                    found.append(f"{path}: {outcome.n_sources} sources, designed at least {e.min_sources}")
                if e.max_sources is not None and outcome.n_sources > e.max_sources:
                    found.append(f"{path}: {outcome.n_sources} sources, designed at most {e.max_sources}")
                if outcome.coords != e.coords:
                    found.append(f"{path}: coordinates {outcome.coords}, designed {e.coords}")
            if e.checksum is not None and outcome.status == "ok" and outcome.checksum_status != e.checksum:
                found.append(f"{path}: checksum_status {outcome.checksum_status}, designed {e.checksum}")
        if self.local and self.aws and self.local.status == self.aws.status == "ok" \
                and self.local.n_sources != self.aws.n_sources:
            found.append(f"catalogs differ: {self.local.n_sources} sources locally, {self.aws.n_sources} on AWS")
        return found

    @property
    def agree(self) -> bool:
        """Local and AWS give the same verdict (and, when measured, the same catalog size)."""
        if self.local is None or self.aws is None:
            return False
        same_catalog = self.local.status != "ok" or self.local.n_sources == self.aws.n_sources
        return self.local.verdict == self.aws.verdict and same_catalog and self.local.rows == self.aws.rows


def compare(corpus: list[Entry], local: PathRun, aws: PathRun) -> list[Row]:
    return [Row(e, local.outcomes.get(e.name), aws.outcomes.get(e.name)) for e in corpus]


def problems(rows: list[Row]) -> list[str]:
    return [f"{row.entry.name}: {p}" for row in rows for p in row.problems()]


def _cell(outcome: Outcome | None) -> str:
    text = _verdict(outcome)
    if outcome is not None and outcome.rows != 1:
        text += f" ({outcome.rows} images)"
    if outcome is not None and outcome.status == "ok":
        text += f", {outcome.n_sources} src"
        if outcome.checksum_status not in (None, "absent"):
            text += f", checksum {outcome.checksum_status}"
        if outcome.coords == "null":
            text += ", RA/Dec null"
    return text


def markdown(rows: list[Row], local: PathRun, aws: PathRun) -> str:
    """The corpus table, then the figures of both runs."""
    lines = [
        "| file | kind | designed | local: route | local: verdict | AWS: route | AWS: verdict | local = AWS | as designed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        e = row.entry
        lines.append(" | ".join([
            f"| `{e.name}`", e.kind, _verdict(Outcome(*e.expected)),
            (row.local.route if row.local else None) or "-", _cell(row.local),
            (row.aws.route if row.aws else None) or "-", _cell(row.aws),
            "yes" if row.agree else "**no**", "yes" if not row.problems() else "**no**",
        ]) + " |")
    n_ok = sum(not r.problems() for r in rows)
    n_agree = sum(r.agree for r in rows)
    lines += [
        "",
        f"{len(rows)} files: {n_agree} with the same verdict on both paths, {n_ok} exactly as designed.",
        "",
        "| path | memory cap (RLIMIT_AS, per process) | peak RSS | wall time | exit code |",
        "|---|---|---|---|---|",
    ]
    for run, name in ((local, "local: `skysift run -j 2`"), (aws, "emulated AWS: IngestImage on moto, handlers in-process")):
        lines.append(f"| {name} | {MEMORY_CAP_BYTES / 2**30:.0f} GiB | {run.peak_rss_bytes / 2**20:,.0f} MiB | "
                     f"{run.seconds:.0f} s | {run.returncode} |")
    if aws.extra.get("peak_address_space_bytes"):
        lines.append("")
        lines.append(f"Peak address space of the emulation (what RLIMIT_AS counts): "
                     f"{aws.extra['peak_address_space_bytes'] / 2**30:.2f} GiB.")
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="skysift-corpus-") as work:
        root = Path(work)
        corpus = write_corpus(root / "corpus")
        local = run_local(root / "corpus", root / "local" / "home")
        aws = run_emulated(root / "corpus", root / "aws")
    rows = compare(corpus, local, aws)
    print(markdown(rows, local, aws))
    remaining = problems(rows)
    if remaining:
        print("\nNot as designed:\n" + "\n".join(f"- {p}" for p in remaining))
    return 0
