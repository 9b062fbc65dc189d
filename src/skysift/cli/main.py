"""The ``skysift`` command: local mode entry points (parse input, call the library, shape output)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from skysift.cli import terminal
from skysift.cli.terminal import (
    HDU,
    LazyChoice,
    OutputFile,
    SkysiftGroup,
    hold_home_lock,
    settings_for,
)
from skysift.errors import NoImageHDU, SkysiftError
from skysift.heap import choose_allocators

__all__ = [
    "LAZY_ALERT_COMMANDS",
    "LAZY_COMMANDS",
    "alerts",
    "alerts_export",
    "check",
    "cli",
    "compact",
    "err_console",
    "export",
    "inspect",
    "main",
    "objects",
    "parse_bytes",
    "plot",
    "query",
    "run",
    "sample",
]

if TYPE_CHECKING:
    from skysift.pipeline.survey import RunReport

# Imported where used, not here, so that `skysift --help` and `--version` stay light:
# the settings (pydantic), storage (fsspec), rich's progress bars and tables, the version
# (importlib.metadata), and every command's own modules.
console = terminal.console()
err_console = terminal.console(stderr=True)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: what click's version_option prints, the version looked up only when asked."""
    if not value or ctx.resilient_parsing:
        return
    from skysift import __version__

    click.echo(f"skysift, version {__version__}")
    ctx.exit()


#: Commands that live beside their own modules, imported only when used (see SkysiftGroup).
LAZY_COMMANDS = {
    "crossmatch": ("skysift.cli.analysis:crossmatch",
                   "Match the sources table to a reference catalog; write the matches table; report offsets.",
                   "analysis"),
    "completeness": ("skysift.cli.analysis:completeness",
                     "Inject artificial stars into IMAGE, re-detect, and record its 50%/90% limiting magnitudes.",
                     "analysis"),
    "emulate": ("skysift.cli.aws:emulate_command",
                "Run the AWS system of template.yaml on moto in this process (no AWS account, no Docker).", "emulate"),
    "ingest": ("skysift.cli.aws:ingest_command",
               "Ingest every FITS object under s3://BUCKET/PREFIX (or a manifest) through SurveyIngest on AWS.", "aws"),
    "timelag": ("skysift.cli.timelag:timelag_command",
                "Map the time lag between two channels of a solar image series (FITS + PNG).", "solar"),
}
LAZY_ALERT_COMMANDS = {
    "subscribe": ("skysift.cli.aws:subscribe_command", "Subscribe to alerts, filtered on their message attributes.",
                  "aws"),
}


@click.group(cls=SkysiftGroup, lazy=LAZY_COMMANDS)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
@click.option("--home", type=click.Path(file_okay=False), envvar="SKYSIFT_HOME", default="skysift-data",
              show_default=True, help="Where the local tables, alert log and cutouts live.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False), envvar="SKYSIFT_CONFIG",
              help="TOML settings file ([detection], [background], [photometry], [alerts]).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(home: str, config: str | None, verbose: int) -> None:
    """skysift: FITS images in, a queryable source catalog and alerts out."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False), default="sky")
@click.option("--size", type=click.IntRange(64, 16384), default=1024, show_default=True, help="Image side, pixels.")
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True)
def sample(out_dir: str, size: int, seed: int) -> None:
    """Write a small synthetic survey with known truth into OUT_DIR."""
    from skysift.analysis.sample import make_sample

    with console.status("rendering synthetic sky..."):
        paths = make_sample(out_dir, size=size, seed=seed)
    console.print(f"wrote {len(paths)} images and truth.parquet to [bold]{out_dir}[/]")


@cli.command()
@click.argument("target")
@click.option("--hdu", type=HDU, default=None, help="HDU index or name (default: the first 2-D image).")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True,
              help="Parallel processes.")
@click.option("--threshold", "detection__threshold_sigma", type=float, help="Detection threshold (matched-filter sigma).")
@click.option("--min-area", "detection__min_area_px", type=int, help="Minimum pixels above threshold.")
@click.option("--deblend-cont", "detection__deblend_cont", type=float, help="Deblending contrast (1 = off).")
@click.option("--filter-fwhm", "detection__filter_fwhm_px", type=float, help="Matched filter FWHM, pixels.")
@click.option("--survey", help="Survey name for images whose header has none.")
@click.option("--max-memory", "limits__max_memory_bytes", callback=lambda c, p, v: parse_bytes(v) if v else None,
              help="Memory budget for all workers, e.g. 1GiB; larger images are processed in tiles.")
@click.option("--force", is_flag=True, help="Measure again images already done (default: resume).")
@click.option("--min-snr-alert", "alerts__high_snr", type=float, help="high_snr alert threshold.")
@click.option("--min-flux-alert", "alerts__high_flux", type=float, help="high_flux alert threshold (counts).")
@click.option("--new-radius", "alerts__new_source_radius_arcsec", type=float, help="new_source match radius, arcsec.")
@click.pass_context
def run(ctx: click.Context, target: str, hdu: int | str | None, workers: int, force: bool, **overrides) -> None:
    """Process every FITS file under TARGET (a directory, file or s3:// prefix).

    Files inside the home (tables, alert cut-outs, reports) are never taken as input.
    Exit status: 0 when every image was measured or indexed, 1 when any image (or its
    alerts) failed (each failure is recorded and listed, and the run goes on), 130 when
    interrupted, 2 for a usage or configuration error.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from skysift.catalog.records import ImageStatus
    from skysift.io import storage
    from skysift.pipeline.survey import run_local

    settings = settings_for(ctx, **overrides)
    hold_home_lock(ctx, settings.home)  # runs on one home go one after the other
    uris = storage.list_fits(target, exclude=[settings.home])  # never its own outputs
    if not uris:
        raise click.UsageError(f"no FITS files (*.fits, *.fits.gz, *.fz) under {target}")
    hdu_value = _hdu_of_single_file(hdu, target, uris)
    columns = [TextColumn("[bold]processing"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("images", total=None, rate="")

        def advance(summary) -> None:
            progress.advance(task)
            elapsed = progress.tasks[0].elapsed or 1e-9
            progress.update(task, rate=f"{progress.tasks[0].completed / elapsed:.2f} img/s")

        report = run_local(uris, settings, workers=workers, hdu=hdu_value, on_image=advance, resume=not force,
                           on_plan=lambda n: progress.update(task, total=n), objects=True)
    n_images = len(report.summaries) + report.skipped
    table = Table(title=f"skysift run: {n_images} images of {len(uris)} files in {report.seconds:.1f} s")
    for name in ("image", "status", "sources", "alerts", "seconds", "note"):
        table.add_column(name, justify="right" if name in ("sources", "alerts", "seconds") else "left")
    per_file = Counter(s.uri for s in report.summaries)
    multi = {uri for uri, n in per_file.items() if n > 1}
    for s in report.summaries:
        colour = {ImageStatus.OK: "green", ImageStatus.INDEXED: "cyan", ImageStatus.FAILED: "red"}.get(s.status, "white")
        note = f"{s.reason}: {s.message}" if s.reason else ""
        table.add_row(_image_name(s, multi), f"[{colour}]{s.status}[/]", str(s.n_sources), str(s.n_alerts),
                      f"{s.seconds:.2f}", note)
    console.print(table)
    console.print(f"{report.count(ImageStatus.OK)} ok, {report.count(ImageStatus.INDEXED)} indexed, "
                  f"{report.count(ImageStatus.FAILED)} failed; "
                  f"{report.n_sources} sources, {report.n_alerts} alerts; tables in [bold]{settings.home}[/]")
    if report.skipped:
        console.print(f"{report.skipped} image(s) already done with these settings were skipped (--force to redo them)")
    if report.remeasured_settings:
        console.print(f"{report.remeasured_settings} image(s) done before with other measurement settings were "
                      "measured again (their rows replaced)")
    if report.interrupted:
        console.print("[yellow]interrupted[/]: finished images are kept; run the same command again to resume")
    failures = [(s.uri, s.reason, s.message) for s in report.summaries if s.status == ImageStatus.FAILED]
    failures += [(f["uri"], "alerts " + str(f["reason"]), f["message"]) for f in report.alert_failures]
    if failures:
        console.print(f"[bold red]{len(failures)} failure(s)[/] (details in the run report):")
        for uri, reason, message in failures:
            console.print(f"  {uri}: {reason}: {message}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"run report: {report.report_path}")
    objects_ok = _say_objects(report)
    sys.exit(report.exit_code if objects_ok else max(report.exit_code, 1))


def _image_name(summary, multi: set[str]) -> str:
    """File name of an image, with its HDU when the run measured several of the file (``mosaic.fits[CCD2]``)."""
    name = Path(summary.uri or "?").name
    return f"{name}[{summary.hdu_name or summary.hdu}]" if summary.uri in multi and summary.hdu is not None else name


def _say_objects(report: RunReport) -> bool:
    """What the run's objects step did (the objects its images touch, recomputed); False (and a
    message) if it failed."""
    exc = report.objects_error
    if exc is not None:
        if not isinstance(exc, SkysiftError):
            raise exc
        terminal.print_error(exc.reason, f"objects not updated: {exc} (then run `skysift objects --rebuild`)")
        return False
    done = report.objects
    if done is not None and done.cells:
        console.print(f"objects: {done.objects} in the {done.cells} sky cell(s) these images cover"
                      + (" (table built from every source)" if done.rebuilt else ""))
    return True


@cli.command()
@click.option("--rebuild", is_flag=True, help="Recompute every object from the sources table (after a radius "
              "change, or deleted images).")
@click.option("--radius", "objects__radius_arcsec", type=click.FloatRange(min=0, min_open=True, max=60),
              help="Association radius, arcsec (setting objects.radius_arcsec; default 1), with --rebuild.")
@click.pass_context
def objects(ctx: click.Context, rebuild: bool, **overrides) -> None:
    """Detections associated across images into objects: how many, seen how often.

    `skysift run` keeps the objects table up to date; it is built from every source the
    first time, and by --rebuild.
    """
    from rich.table import Table

    from skysift.catalog.objects import rebuild_objects, update_objects
    from skysift.catalog.query import LocalCatalog

    if overrides["objects__radius_arcsec"] is not None and not rebuild:
        raise click.UsageError("--radius changes every object: give it with --rebuild")
    settings = settings_for(ctx, **overrides)
    radius = settings.objects.radius_arcsec
    hold_home_lock(ctx, settings.home)  # it writes the objects table
    with console.status("associating detections..."):
        if rebuild:
            done = rebuild_objects(settings.home, radius_arcsec=radius)
        else:  # builds the table when it was never built
            done = update_objects(settings.home, [], radius_arcsec=radius)
    catalog = LocalCatalog(settings.home)
    counts = catalog.arrow("SELECT n_det, COUNT(*) AS objects FROM objects GROUP BY 1 ORDER BY 1").to_pylist()
    total = catalog.arrow("SELECT COUNT(*) AS n, COALESCE(SUM(n_det), 0) AS d, COUNT(DISTINCT sky_cell) AS c, "
                          "MIN(radius_arcsec) AS r FROM objects").to_pylist()[0]
    if done.rebuilt:
        console.print(f"rebuilt from {done.detections} clean detections")
    if not total["n"]:
        console.print(f"no objects in {settings.home}: no clean detection with a sky position (run `skysift run` first)")
        return
    table = Table(title=f"{total['n']} objects from {total['d']} clean detections in {total['c']} sky cell(s), "
                  f"association radius {total['r']:g} arcsec")
    table.add_column("detections per object", justify="right")
    table.add_column("objects", justify="right")
    for row in counts:
        table.add_row(str(row["n_det"]), str(row["objects"]))
    console.print(table)


#: An argument that is an option's name, not SQL (``--fromat``, ``-x``): a typo, never a comment.
_OPTION_LIKE = re.compile(r"-{1,2}[A-Za-z][\w-]*(=\S*)?")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("sql_parts", metavar="[SQL]...", nargs=-1)
@click.option("-f", "--file", "sql_file", type=click.File("r"), help="Read the SQL from FILE ('-': standard input).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True, help="csv, json and parquet keep the column types (parquet needs -o).")
@click.option("-o", "--output", type=OutputFile(), default=None, help="Write the result to this file (csv, json, parquet).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Rows to print in table format.")
@click.option("--athena", is_flag=True, help="Run on Athena (the deployed stack's Glue tables) instead of locally.")
@click.option("--stack", default="skysift-dev", show_default=True, help="CloudFormation stack, with --athena.")
@click.pass_context
def query(ctx: click.Context, sql_parts: tuple[str, ...], sql_file, fmt: str, output: str | None, limit: int,
          athena: bool, stack: str) -> None:
    """Run SQL on the tables: DuckDB locally, or Athena.

    The SQL is the argument(s), FILE (-f), or standard input ('-', or nothing when
    piped). It may start with a '-- comment' and hold several statements separated
    by ';': each result is printed (csv, json and parquet take one result). Tables:
    sources, images, alerts, objects, detections, matches, injections.
    """
    from skysift.cli.query_output import csv_text, json_text, write_parquet

    sql = _query_text(sql_parts, sql_file)
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet writes a file: give -o FILE.parquet")
    if fmt == "table" and output is not None:
        raise click.UsageError("-o writes csv, json or parquet: add --format csv|json|parquet")
    results = _athena_results(sql, stack) if athena else _local_results(ctx, sql)
    if fmt == "table":
        for result in results:
            _print_result(result, limit, titled=len(results) > 1)
        if not results:
            console.print("done (no statement returned rows)")
        return
    if len(results) != 1:
        from skysift.catalog.query import QueryError

        numbers = ", ".join(str(r.number) for r in results) or "none"
        raise QueryError(f"--format {fmt} writes one result, and {len(results)} statements returned rows "
                         f"(statements {numbers}): run them one at a time, or use --format table")
    table = results[0].table
    if fmt == "parquet":
        write_parquet(table, output)
        console.print(f"wrote {output} ({table.num_rows} rows, {table.num_columns} columns)")
        return
    text = csv_text(table) if fmt == "csv" else json_text(table) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text)
        console.print(f"wrote {output} ({table.num_rows} rows)")


def _query_text(sql_parts: tuple[str, ...], sql_file) -> str:
    """The SQL of ``skysift query``: arguments (joined by newlines, so a '-- comment' argument
    ends at its own end), ``-f FILE``, or standard input (``-`` or nothing when piped)."""
    for part in sql_parts:
        if _OPTION_LIKE.fullmatch(part):
            raise click.NoSuchOption(part.split("=", 1)[0])
    if sql_parts and sql_file is not None:
        raise click.UsageError("give the SQL as an argument or with -f FILE, not both")
    if sql_parts == ("-",):
        sql = click.get_text_stream("stdin").read()
    elif sql_parts:
        sql = "\n".join(sql_parts)
    elif sql_file is not None:
        sql = sql_file.read()
    elif not terminal.is_terminal(click.get_text_stream("stdin")):
        sql = click.get_text_stream("stdin").read()
    else:
        raise click.UsageError("give the SQL: skysift query \"SELECT ...\", -f FILE.sql, or - to read standard input")
    if not sql.strip():
        raise click.UsageError("the SQL is empty")
    return sql


def _local_results(ctx: click.Context, sql: str):
    from skysift.catalog.query import LocalCatalog

    return LocalCatalog(settings_for(ctx).home).run_script(sql)


def _athena_results(sql: str, stack: str):
    """Each statement run on Athena (which takes one statement per query), in order."""
    import pyarrow as pa

    from skysift.catalog.query import QueryError, QueryResult, split_statements
    from skysift.cli.aws import athena_query_for

    try:
        statements = split_statements(sql)
    except QueryError:  # Athena's SQL is not all DuckDB's: send it whole, Athena will say
        statements = [sql]
    results = []
    for number, statement in enumerate(statements, start=1):
        frame = athena_query_for(statement, stack=stack)
        results.append(QueryResult(number, statement, pa.Table.from_pandas(frame, preserve_index=False)))
    return results


def _print_result(result, limit: int, *, titled: bool) -> None:
    """One result as a table: every digit of every value (a terminal folds, never cuts)."""
    from rich.table import Table

    from skysift.cli.query_output import is_numeric, text_rows

    title = Text(f"statement {result.number}: {' '.join(result.statement.split())}") if titled else None
    table = Table(title=title, title_justify="left")
    for field in result.table.schema:
        table.add_column(Text(field.name), justify="right" if is_numeric(field.type) else "left", overflow="fold")
    for row in text_rows(result.table, limit):
        table.add_row(*(Text(cell) for cell in row))  # Text: a value is never read as rich markup
    console.print(table, highlight=False)
    if result.table.num_rows > limit:
        console.print(f"... {result.table.num_rows - limit} more rows (use --limit or --format csv)")


def _hdu_of_single_file(hdu: int | str | None, target: str, uris: list[str]) -> int | str | None:
    """``hdu``, after checking that the one file given has it (a usage error if not).

    A directory's files are not opened here: one without the HDU is recorded as
    failed (``no_image_hdu``) and the run goes on.
    """
    from skysift.io import storage

    if hdu is None or uris != [storage.normalize_uri(target)]:
        return hdu
    from skysift.io.fits import inspect_image

    try:
        inspect_image(uris[0], hdu)
    except NoImageHDU as exc:
        raise click.BadParameter(exc.message, param_hint="'--hdu'") from exc
    except SkysiftError:
        pass  # any other problem with the file is the run's to record
    return hdu


def parse_bytes(text: str) -> int:
    """'1GiB', '512MB', '2g' or a plain number of bytes, as bytes."""
    from skysift.settings import parse_bytes as parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size like 1GiB, 512MB or 2000000000") from None


@cli.group(cls=SkysiftGroup, lazy=LAZY_ALERT_COMMANDS, invoke_without_command=True)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--rule", type=LazyChoice("skysift.settings:ALERT_RULES"), help="Only this rule.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def alerts(ctx: click.Context, limit: int, rule: str | None, as_json: bool) -> None:
    """The alerts raised, newest first (and `alerts subscribe` on AWS)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from skysift.alerts.log import LogPublisher

    items = [a for a in LogPublisher(settings_for(ctx).home).read() if rule is None or a["rule"] == rule][:limit]
    if as_json:
        for item in items:
            click.echo(json.dumps(item))
        return
    if not items:
        console.print("no alerts yet")
        return
    if console.width < 130:  # a narrow terminal: one block per alert reads better than a squeezed table
        for a in items:
            mag = "" if a.get("mag_ab") is None else f"  mag {a['mag_ab']:.2f}"
            where = "RA, Dec unknown (WCS not trusted)" if a.get("ra") is None else f"RA {a['ra']:.5f}  Dec {a['dec']:+.5f}"
            console.print(f"[bold]{a['rule']}[/]  {(a.get('obs_time') or '')[:16]}  {a['source_id']}\n"
                          f"    {where}  SNR {a['snr']:.0f}{mag}\n    {a['detail']}")
        return
    table = Table(title="alerts (newest first)")
    for name in ("observed", "rule", "source", "ra", "dec", "snr", "mag", "why"):
        table.add_column(name, no_wrap=name != "why")
    for a in items:
        ra, dec = ("", "") if a.get("ra") is None else (f"{a['ra']:.5f}", f"{a['dec']:.5f}")  # null: WCS not trusted
        table.add_row((a.get("obs_time") or "")[:16], a["rule"], a["source_id"], ra, dec,
                      f"{a['snr']:.0f}", "" if a.get("mag_ab") is None else f"{a['mag_ab']:.2f}", a["detail"])
    console.print(table)


@alerts.command("export")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder to write one file per alert into ({alert_id}.avro or .json).")
@click.option("--format", "fmt", type=click.Choice(["avro", "json"]), default="avro", show_default=True,
              help="avro: the packet (Avro container, schema skysift.alert.v1); json: the same fields, stamps base64.")
@click.option("--rule", type=LazyChoice("skysift.settings:ALERT_RULES"), help="Only this rule.")
@click.option("--rebuild", is_flag=True, help="Build every packet again from the tables as they are now (e.g. "
              "with the matches of a later `skysift crossmatch`) instead of the one stored with the alert.")
@click.pass_context
def alerts_export(ctx: click.Context, out_dir: str, fmt: str, rule: str | None, rebuild: bool) -> None:
    """Write the alert packets of the alerts in the home: candidate, object, previous detections,
    stamps and cross-matches, in the versioned Avro schema skysift.alert.v1 (or as JSON).

    Exit status 1 when an alert's packet could not be made (its image left the tables).
    """
    from skysift.alerts.packets import export_packets

    settings = settings_for(ctx)
    report = export_packets(settings.home, out_dir, fmt, rebuild=rebuild, rule=rule,
                            cutout_size_px=settings.alerts.cutout_size_px,
                            radius_arcsec=settings.objects.radius_arcsec)
    built = f" ({report.built} built from the tables)" if report.built else ""
    console.print(f"wrote {len(report.written)} packet(s) ({fmt}) to {out_dir}{built}", markup=False, highlight=False)
    for alert_id, why in report.missing:
        err_console.print(f"no packet for alert {alert_id}: {why}", markup=False, highlight=False)
    if report.missing:
        ctx.exit(1)


@cli.command()
@click.argument("image", required=False)
@click.option("-o", "--output", type=OutputFile(), default=None,
              help="PNG path (default: IMAGE name + .png, or overview.png).")
@click.option("--hdu", type=HDU, default=None)
@click.option("--overview", is_flag=True, help="Catalog overview from the tables: sky map with footprints, "
              "magnitude and SNR histograms, size-magnitude diagram (no IMAGE).")
@click.option("--diagnostics", is_flag=True, help="IMAGE with detections, its background map and RMS map.")
@click.pass_context
def plot(ctx: click.Context, image: str | None, output: str | None, hdu: int | str | None, overview: bool,
         diagnostics: bool) -> None:
    """Draw an image with its detections (measured now, with the current settings), or the catalog overview.

    Large images are drawn block-averaged, read in bands or tiles within the memory budget.
    """
    from skysift.analysis.plotting import (
        catalog_overview,
        detections_overlay,
        image_diagnostics,
        read_for_display,
    )
    from skysift.io import storage
    from skysift.pipeline.image import process_image

    settings = settings_for(ctx)
    if overview and (image is not None or diagnostics):
        raise click.UsageError("--overview draws the whole catalog: give no IMAGE and no --diagnostics")
    if not overview and image is None:
        raise click.UsageError("give an IMAGE, or --overview")
    out = output or ("overview.png" if overview else
                     Path(image).name.split(".")[0] + ("_diagnostics" if diagnostics else "") + ".png")
    storage.check_writable(out)  # before the work, not after
    if overview:
        from skysift.catalog.query import LocalCatalog

        catalog = LocalCatalog(settings.home)
        sources = catalog.sql("SELECT ra, dec, mag_ab, flux, snr, fwhm_arcsec, star_score FROM sources")
        if sources.empty:
            raise click.UsageError(f"no sources in {settings.home}: run `skysift run` first")
        images = catalog.sql("SELECT corners_ra, corners_dec FROM images WHERE status = 'ok'")
        catalog_overview(sources, images, out, title=str(settings.home))
        console.print(f"wrote {out} ({len(sources)} sources, {len(images)} images)")
        return
    result = process_image(image, settings, hdu=hdu)
    if result.error is not None:
        raise result.error
    view = read_for_display(image, result.info.hdu, settings, background=diagnostics)
    (image_diagnostics if diagnostics else detections_overlay)(view, result.sources, out)
    console.print(f"wrote {out} ({result.record.n_sources or 0} detections)")


@cli.command()
@click.option("--table", "tables", multiple=True, type=click.Choice(["sources", "images", "alerts"]),
              help="Only these tables (default: all).")
@click.pass_context
def compact(ctx: click.Context, tables: tuple[str, ...]) -> None:
    """Merge each partition's small per-image files into one large file."""
    from skysift.catalog.tables import TABLES, LocalTables

    home = settings_for(ctx).home
    hold_home_lock(ctx, home)
    reports = LocalTables(home).compact(tables or TABLES)
    for table, r in reports.items():
        console.print(f"{table}: {r.files_before} files -> {r.files_after} ({r.partitions} partitions rewritten, {r.rows:,} rows)")


@cli.command()
@click.argument("image")
@click.option("--hdu", type=HDU, default=None)
def inspect(image: str, hdu: int | str | None) -> None:
    """Header-only description of an image (what the router sees)."""
    from skysift.io.fits import inspect_image

    click.echo(inspect_image(image, hdu).model_dump_json(indent=2))


@cli.command()
@click.option("--repair", is_flag=True, help="Move damaged files to HOME/damaged/ (their images are then measured "
              "again by the next run) and remove temporaries that killed writers left.")
@click.option("--deep", is_flag=True, help="Read every column of every file, not only the footers (slower).")
@click.pass_context
def check(ctx: click.Context, repair: bool, deep: bool) -> None:
    """Check that every table file under the home can be read; exit 1 if any cannot."""
    from skysift.catalog import integrity

    home = Path(settings_for(ctx).home)
    if repair:
        hold_home_lock(ctx, home)
    files = integrity.table_files(home)
    damaged = integrity.find_damaged(home, deep=deep)
    for item in damaged:
        click.echo(f"damaged: {item.path} ({item.problem})")
    if repair:
        orphaned = integrity.images_without_sources(home, damaged) if damaged else []
        for item in orphaned:
            click.echo(f"to redo: {item.path} ({item.problem})")
        for target in integrity.move_aside(home, damaged + orphaned):
            click.echo(f"moved to {target}")
        for path in integrity.remove_orphan_temporaries(home, older_than_s=0.0):
            click.echo(f"removed temporary {path}")
    click.echo(f"{len(files)} table files, {len(damaged)} damaged" + (", moved aside" if repair and damaged else ""))
    if damaged and not repair:
        ctx.exit(1)


@cli.command()
@click.option("-o", "--output", type=OutputFile(), required=True,
              help="File to write: .fits (FITS table), .vot (VOTable) or .reg (DS9 regions).")
@click.option("--format", "fmt", type=click.Choice(["fits", "votable", "ds9"]), default=None,
              help="Default: from the output's suffix.")
@click.option("--image", default=None, help="Only this image (its path, URI or image_id); required for ds9.")
@click.option("--table", type=click.Choice(["sources", "images", "alerts"]), default="sources", show_default=True)
@click.option("--where", default=None, help="SQL condition on the table's columns, e.g. \"snr > 20\".")
@click.pass_context
def export(ctx: click.Context, output: str, fmt: str | None, image: str | None, table: str,
           where: str | None) -> None:
    """Write a catalog for TOPCAT, Aladin or DS9: FITS table, VOTable or DS9 region file."""
    from skysift.catalog.export import (
        ExportError,
        ExportFormat,
        image_wcs,
        write_regions,
        write_table,
    )
    from skysift.catalog.query import LocalCatalog
    from skysift.io import storage

    chosen = ExportFormat(fmt) if fmt else ExportFormat.from_path(output)
    catalog = LocalCatalog(settings_for(ctx).home)
    images = catalog.sql("SELECT image_id, uri, wcs_header FROM images WHERE status = 'ok'")
    if image is not None:
        wanted = {image, storage.normalize_uri(image)}
        images = images[images["image_id"].isin(wanted) | images["uri"].isin(wanted)]
        if images.empty:
            raise ExportError(f"no measured image {image!r} in the tables (see 'skysift query \"SELECT uri FROM images\"')")
    if chosen is ExportFormat.DS9 and len(images) != 1:
        raise click.UsageError("a DS9 region file is for one image: name it with --image")
    conditions = [f"({where})"] if where else []
    params = {}
    if image is not None or chosen is ExportFormat.DS9:
        conditions.append("image_id = $image_id")
        params["image_id"] = images.iloc[0]["image_id"]
    sql = f"SELECT * FROM {table}" + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
    rows = catalog.arrow(sql, params)
    if chosen is ExportFormat.DS9:
        path = write_regions(rows, image_wcs(images.iloc[0]["wcs_header"]), output)
    else:
        path = write_table(rows, output, chosen, table)
    click.echo(f"wrote {path} ({rows.num_rows} rows, {chosen})")


def main() -> None:
    choose_allocators()  # before anything imports numpy or pyarrow (nothing above does)
    terminal.run_and_exit(cli)


if __name__ == "__main__":
    main()
