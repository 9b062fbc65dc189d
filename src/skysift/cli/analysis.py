"""``skysift crossmatch`` and ``skysift completeness``: parse input, call the library, print.

Registered on the main group with :func:`register` (``register(cli)`` in
:mod:`skysift.cli.main`). Errors are skysift's typed errors, which the group ends with a
one-line message and the exit status of :mod:`skysift.cli.terminal`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
from astropy import units as u
from rich.table import Table

from skysift.cli import terminal
from skysift.cli.terminal import HDU, OutputFile, hold_home_lock, settings_for
from skysift.errors import SkysiftError

__all__ = ["completeness", "crossmatch", "register"]

console = terminal.console()




def _arcsec(text: str) -> float:
    """'1arcsec', '0.5 arcsec', '2' (arcsec), '0.001deg' -> arcsec (> 0)."""
    try:
        quantity = u.Quantity(text.strip())
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"{text!r} is not an angle such as 1arcsec or 0.0003deg") from exc
    try:
        value = float(quantity.value if quantity.unit == u.dimensionless_unscaled else quantity.to_value(u.arcsec))
    except u.UnitConversionError as exc:
        raise click.BadParameter(f"{text!r} is not an angle") from exc
    if not value > 0:
        raise click.BadParameter(f"{text!r}: the radius must be positive")
    return value


def _fmt(value, digits: int = 3, sign: str = "+") -> str:
    return "-" if value is None else f"{value:{sign}.{digits}f}"


@click.command()
@click.option("--reference", "reference_path", type=click.Path(exists=True, dir_okay=False),
              help="Reference catalog: Parquet or CSV with ra, dec (deg) and a magnitude column.")
@click.option("--gaia", is_flag=True, help="Fetch Gaia DR3 around the image footprints (needs network and astroquery).")
@click.option("--radius", "radius_arcsec", default="1arcsec", show_default=True, callback=lambda ctx, param, value: _arcsec(value),
              help="Match radius (e.g. 1arcsec, 0.5arcsec).")
@click.option("--mag-column", default=None, help="Reference magnitude column (default: mag, phot_g_mean_mag, rmag...).")
@click.option("--min-snr-zp", type=click.FloatRange(min=0), default=20.0, show_default=True, help="Minimum SNR of sources in the zero-point statistic.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def crossmatch(ctx: click.Context, reference_path: str | None, gaia: bool, radius_arcsec: float, mag_column: str | None,
               min_snr_zp: float, as_json: bool) -> None:
    """Match the sources table to a reference catalog; write the matches table; report offsets."""
    from skysift.analysis import crossmatch as xm
    from skysift.catalog.records import ImageStatus
    from skysift.catalog.tables import LocalTables

    if bool(reference_path) == gaia:
        raise click.UsageError("give exactly one of --reference FILE or --gaia")
    home = settings_for(ctx).home
    if gaia:
        reference = xm.fetch_gaia((r.center_ra, r.center_dec, r.radius_deg) for r in LocalTables(home).images()
                                  if r.status is ImageStatus.OK and r.center_ra is not None)
    else:
        reference = xm.read_reference(reference_path, mag_column)
    hold_home_lock(ctx, home)  # it writes the matches table
    report = xm.crossmatch(home, reference, radius_arcsec=radius_arcsec, min_snr_zp=min_snr_zp)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "per_image": report.per_image}, default=str))
        return
    table = Table(title=f"cross-match with {reference.name} ({len(reference):,} objects) within {radius_arcsec:g} arcsec")
    for name in ("image", "sources", "ref inside", "matched", "fraction", "dRA*cosDec \"", "dDec \"", "dmag"):
        table.add_column(name, justify="left" if name == "image" else "right")
    for row in report.per_image:
        fraction = "-" if row["matched_fraction"] is None else f"{row['matched_fraction']:.3f}"
        table.add_row(Path(str(row["uri"])).name, str(row["n_sources"]), str(row["n_reference_inside"]),
                      str(row["n_matched"]), fraction, _fmt(row["dra_median_arcsec"]), _fmt(row["ddec_median_arcsec"]),
                      _fmt(row["dmag_median"]))
    console.print(table)
    fraction = "-" if report.matched_fraction is None else f"{report.matched_fraction:.1%}"
    console.print(
        f"{report.n_matched} matches; {fraction} of reference objects inside the images matched\n"
        f"astrometry (source - reference): dRA*cos(Dec) {_fmt(report.dra_median_arcsec)} +/- "
        f"{_fmt(report.dra_sigma_arcsec, sign='')} arcsec, dDec {_fmt(report.ddec_median_arcsec)} +/- "
        f"{_fmt(report.ddec_sigma_arcsec, sign='')} arcsec (median, robust sigma)\n"
        f"photometry: mag_ab - ref mag = {_fmt(report.dmag_median)} +/- {_fmt(report.dmag_sigma, sign='')} mag "
        f"({report.n_dmag} sources with SNR >= {min_snr_zp:g}); matches table in {home}/tables/matches"
    )


@click.command()
@click.argument("image")
@click.option("--rounds", type=click.IntRange(min=1), default=4, show_default=True, help="Detection runs, each with a fresh set of stars.")
@click.option("--stars", "n_per_round", type=click.IntRange(min=1), default=300, show_default=True, help="Artificial stars per run.")
@click.option("--mag-min", type=float, help="Brightest injected magnitude (default: 5-sigma limit - 2.5).")
@click.option("--mag-max", type=float, help="Faintest injected magnitude (default: 5-sigma limit + 1.5).")
@click.option("--fwhm", "seeing_fwhm_px", type=click.FloatRange(min=0, min_open=True), help="PSF FWHM in pixels (default: the image's measured seeing).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--plot", "plot_path", type=OutputFile(), default=None, help="Also draw the curve into this PNG.")
@click.option("--hdu", type=HDU, default=None)
@click.pass_context
def completeness(ctx: click.Context, image: str, rounds: int, n_per_round: int, mag_min: float | None,
                 mag_max: float | None, seeing_fwhm_px: float | None, seed: int, plot_path: str | None,
                 hdu: int | str | None) -> None:
    """Inject artificial stars into IMAGE, re-detect, and record its 50%/90% limiting magnitudes."""
    from skysift.analysis.completeness import record_completeness, run_completeness
    from skysift.catalog.records import ImageStatus
    from skysift.catalog.tables import LocalTables

    settings = settings_for(ctx)
    if seeing_fwhm_px is None:  # the seeing measured on this image (this HDU of a multi-extension file)
        from skysift.io.fits import inspect_image

        try:
            image_id = inspect_image(image, hdu, limits=settings.limits.header_limits()).image_id
        except SkysiftError:
            image_id = None  # run_completeness reports the problem with the file
        stored = LocalTables(settings.home).image(image_id) if image_id else None
        known = stored.seeing_fwhm_px if stored is not None and stored.status is ImageStatus.OK else None
        seeing_fwhm_px = float(known) if known is not None and math.isfinite(known) else None
    mag_range = None
    if mag_min is not None or mag_max is not None:
        if mag_min is None or mag_max is None or mag_min >= mag_max:
            raise click.UsageError("give both --mag-min and --mag-max, with --mag-min < --mag-max")
        mag_range = (mag_min, mag_max)
    with console.status(f"injecting {rounds} x {n_per_round} stars..."):
        result = run_completeness(image, settings, seeing_fwhm_px=seeing_fwhm_px, mag_range=mag_range,
                                  n_per_round=n_per_round, rounds=rounds, seed=seed, hdu=hdu)
    hold_home_lock(ctx, settings.home)  # it rewrites the image's images row
    pointers = record_completeness(settings.home, result)
    table = Table(title=f"completeness of {Path(result.uri).name} (FWHM {result.seeing_fwhm_px:.2f} px)")
    for name in ("mag", "injected", "recovered", "completeness"):
        table.add_column(name, justify="right")
    for b in result.bins:
        value = "-" if b["completeness"] is None else f"{b['completeness']:.2f}"
        table.add_row(f"{b['mag_lo']:.2f}-{b['mag_hi']:.2f}", str(b["n_injected"]), str(b["n_recovered"]), value)
    console.print(table)
    console.print(f"50% limit {result.mag50:.2f} mag, 90% limit {result.mag90:.2f} mag ({result.mag_system}); "
                  f"bright-end completeness {result.fit['plateau']:.2f}; written to images "
                  f"(completeness_mag50/90), {pointers['injections']} and {pointers['curve']}")
    if plot_path:
        from skysift.analysis.plotting import completeness_plot

        completeness_plot([result.to_json()], plot_path)
        console.print(f"wrote {plot_path}")


def register(group: click.Group) -> None:
    """Add ``crossmatch`` and ``completeness`` to the ``skysift`` group."""
    group.add_command(crossmatch)
    group.add_command(completeness)
