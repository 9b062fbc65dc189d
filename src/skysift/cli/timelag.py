"""``skysift timelag``: a per-pixel time-lag map between two channels of a solar image series.

Example::

    skysift timelag --channel-a 193 --channel-b 171 \\
        --start 2011-02-15T00:00 --end 2011-02-15T12:00 \\
        --center "-125,250" --fov 500,500 --cadence 4min --max-lag 6h -o lag.fits

The series comes from the images index (``--index``: a skysift home, default
``skysift --home`` / ``$SKYSIFT_HOME``, or ``athena://DATABASE?workgroup=W``), or from
frames named directly with ``--frames`` (paths, ``s3://`` or ``https://`` URLs, or
manifests listing them, e.g. what a HelioCloud CloudCatalog search returned; no prior
indexing), read anonymously from public buckets with ``--anon``::

    skysift timelag ... --anon --frames aia_0193.csv --frames aia_0171.csv

The work runs on a local dask cluster, on an existing one (``--scheduler
tcp://host:8786``) or on a new dask-gateway cluster (``--gateway URL``) whose workers
are told what to install.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from datetime import UTC, datetime

import astropy.units as u
import click

from skysift.cli.terminal import OutputFile, SkysiftCommand
from skysift.io import storage
from skysift.settings import Settings
from skysift.timelag.logs import quiet_dask_logging

__all__ = [
    "DURATION_TYPE",
    "PAIR_TYPE",
    "main",
    "parse_duration_s",
    "parse_pair_arcsec",
    "parse_time_utc",
    "timelag_command",
]

log = logging.getLogger(__name__)

_PAIR = re.compile(r"^\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*([A-Za-z]*)\s*$")


def parse_pair_arcsec(text: str) -> tuple[float, float]:
    """``"-125,250"`` (arcsec), ``"-125,250 arcsec"``, ``"-2,4 arcmin"`` or ``"0.1,0.2deg"`` -> arcsec."""
    match = _PAIR.match(text)
    if not match:
        raise click.BadParameter(f"expected two numbers 'X,Y' with an optional angle unit, got {text!r}")
    try:
        unit = u.Unit(match.group(3) or "arcsec")
        values = [float(match.group(i)) * unit for i in (1, 2)]
        return tuple(float(v.to_value(u.arcsec)) for v in values)  # type: ignore[return-value]
    except (ValueError, u.UnitConversionError) as exc:
        raise click.BadParameter(f"{text!r}: {exc}") from exc


def parse_duration_s(text: str) -> float:
    """``"4min"``, ``"6h"``, ``"12 s"`` or a bare number of seconds -> seconds."""
    try:
        quantity = u.Quantity(text.strip()) if not _is_number(text) else float(text) * u.s
        return float(quantity.to_value(u.s))
    except (TypeError, ValueError, u.UnitConversionError) as exc:
        raise click.BadParameter(f"expected a duration like 4min, 6h or 30s, got {text!r}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Parsed(click.ParamType):
    """An option type made from one of the parsers above; already parsed values pass through."""

    def __init__(self, name: str, parse, parsed_type: type) -> None:
        self.name, self._parse, self._parsed_type = name, parse, parsed_type

    def convert(self, value, param, ctx):
        if isinstance(value, self._parsed_type):
            return value
        try:
            return self._parse(value)
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def parse_time_utc(text: str) -> datetime:
    """ISO 8601 -> an aware UTC datetime: ``2011-02-15T00:00Z``, ``...+01:00``, ``2011-02-15 00:00``, ``2011-02-15``.

    A time without an offset is UTC (as in FITS headers and CloudCatalog).
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"expected an ISO 8601 time such as 2011-02-15T00:00Z, 2011-02-15T01:00+01:00 or 2011-02-15, got {text!r}"
        ) from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


PAIR_TYPE = _Parsed("X,Y", parse_pair_arcsec, tuple)
DURATION_TYPE = _Parsed("DURATION", parse_duration_s, float)
_TIME = _Parsed("TIME", parse_time_utc, datetime)


def _root_param(ctx: click.Context, name: str):
    """A parameter of the ``skysift`` group (``--home``, ``-v``) when run under it, else None."""
    root = ctx.find_root()
    return root.params.get(name) if root is not ctx else None


@click.command("timelag", cls=SkysiftCommand)
@click.option("--channel-a", type=float, required=True, help="wavelength of channel A, Angstrom (e.g. 193)")
@click.option("--channel-b", type=float, required=True, help="wavelength of channel B, Angstrom; lag > 0: B follows A")
@click.option("--start", type=_TIME, required=True, help="series start, ISO 8601 (UTC unless an offset or Z is given)")
@click.option("--end", type=_TIME, required=True, help="series end, ISO 8601 (UTC unless an offset or Z is given)")
@click.option("--center", type=PAIR_TYPE, required=True, help='cutout centre "Tx,Ty" at the start, arcsec (or add a unit)')
@click.option("--fov", type=PAIR_TYPE, default="500,500", show_default=True, help="cutout width,height, arcsec")
@click.option("--cadence", type=DURATION_TYPE, default="4min", show_default=True, help="common time grid step")
@click.option("--max-lag", type=DURATION_TYPE, default="6h", show_default=True, help="largest |lag| searched")
@click.option("-o", "--output", type=OutputFile(make_parents=True, remote_ok=True), required=True,
              help="FITS result: path or s3:// URL")
@click.option("--png", type=OutputFile(make_parents=True, remote_ok=True), default=None, help="PNG plot [default: output name with .png]")
@click.option("--instrument", default=None, help="only frames whose INSTRUME/TELESCOP contains this, e.g. AIA")
@click.option("--scale", type=float, default=None, help="cutout pixel size, arcsec [default: the reference frame's]")
@click.option("--reference-time", type=_TIME, default=None, help="observer/time of the cutout [default: --start]")
@click.option("--index", "index_spec", default=None,
              help="skysift home with the images table, or athena://DATABASE?workgroup=W [default: skysift --home]")
@click.option("--frames", "frames", multiple=True, metavar="URL|PATH|MANIFEST",
              help="the frames themselves instead of an index search (repeatable): FITS paths, s3:// or https:// "
                   "URLs, or .csv/.txt manifests listing them (e.g. written by Fido.fetch of a CloudCatalog search)")
@click.option("--anon/--no-anon", default=False, show_default=True,
              help="read remote frames from S3 without credentials (public buckets: HelioCloud, AWS Open Data); "
                   "outputs are still written with your credentials")
@click.option("--scheduler", default=None,
              help="address of an existing dask scheduler, or 'threads'/'sync' [default: a local cluster]")
@click.option("--gateway", default=None, metavar="URL",
              help="address of a dask-gateway server: start a new cluster there for this run (its workers install "
                   "sunpy, reproject, ... at this machine's versions); auth from dask config (gateway.auth)")
@click.option("--gateway-option", "gateway_options", multiple=True, metavar="KEY=VALUE",
              help="a cluster option of the gateway (repeatable), e.g. worker_cores=2 or image=pangeo/base-notebook")
@click.option("--scheduler-timeout", type=DURATION_TYPE, default=None,
              help="how long to wait for --scheduler, or for the first --gateway worker (which installs packages "
                   "before it starts) [default: 30s; 10min with --gateway]")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="worker processes of the local cluster, or workers of the gateway cluster")
@click.option("--tile", type=click.IntRange(16), default=128, show_default=True, help="spatial chunk, pixels")
@click.option("--progress/--no-progress", default=True, show_default=True, help="progress bar on stderr")
@click.pass_context
def timelag_command(ctx: click.Context, channel_a: float, channel_b: float, start: datetime, end: datetime,
                    center: tuple[float, float], fov: tuple[float, float], cadence: float, max_lag: float, output: str,
                    png: str | None, instrument: str | None, scale: float | None, reference_time: datetime | None,
                    index_spec: str | None, frames: tuple[str, ...], anon: bool, scheduler: str | None,
                    gateway: str | None, gateway_options: tuple[str, ...], scheduler_timeout: float | None, workers: int,
                    tile: int, progress: bool) -> None:
    """Map the time lag between two channels of a solar image series (FITS + PNG).

    Prints a JSON summary (outputs, frame counts, lag statistics in seconds, the cluster
    used) on stdout. The outputs are checked to be writable (for s3://, the bucket and
    credentials) before any work starts; a cutout off the disk or outside the frames is
    refused before any pixel is read.
    """
    # imported here: sunpy, reproject and distributed load only when the command runs
    try:
        from dask.diagnostics import ProgressBar

        from skysift.timelag.cluster import dask_client, parse_cluster_options
        from skysift.timelag.pipeline import find_series, run_timelag, series_source
        from skysift.timelag.request import TimeLagRequest
    except ImportError as exc:
        raise click.ClickException(f"time-lag analysis needs the solar extra: pip install 'skysift[solar]' ({exc})") from exc
    quiet_dask_logging(_root_param(ctx, "verbose") or 0)
    if frames and index_spec:
        raise click.UsageError("give either --frames or --index, not both")
    if gateway and scheduler:
        raise click.UsageError("give either --scheduler or --gateway, not both")
    if gateway_options and not gateway:
        raise click.UsageError("--gateway-option needs --gateway")

    request = TimeLagRequest.parse({
        "channel_a": channel_a, "channel_b": channel_b, "start": start, "end": end,
        "center_arcsec": center, "fov_arcsec": fov, "cadence_s": cadence, "max_lag_s": max_lag,
        "instrument": instrument, "scale_arcsec": scale, "reference_time": reference_time,
        "index": None if frames else (index_spec or str(_home(ctx))), "frames": list(frames) or None,
        "anon": anon, "output": output, "png": png, "scheduler": scheduler, "gateway": gateway,
        "cluster_options": parse_cluster_options(gateway_options), "workers": workers, "tile_px": tile,
    })
    for uri in (request.output, request.png_output):  # before the computation, not after it
        storage.check_writable(uri, make_parents=True)
    index = series_source(request)  # --frames: every header is read here, once
    tables = find_series(index, request)  # fail before starting a cluster when there is nothing to do
    cluster: dict[str, object] = {}
    with dask_client(request.scheduler, request.workers, connect_timeout_s=scheduler_timeout,
                     gateway=request.gateway, cluster_options=request.cluster_options, cluster_info=cluster) as client:
        # distributed: a bar over the submitted futures; threads/sync: dask's local ProgressBar
        local_bar = ProgressBar(out=sys.stderr) if progress and client is None else contextlib.nullcontext()
        with local_bar:
            summary = run_timelag(request, index, client, on_submit=_progress_bar if progress else None,
                                  tables=tables)
    click.echo(json.dumps({**summary, "cluster": cluster}, indent=2))


def _home(ctx: click.Context):
    """The skysift home: ``skysift --home`` (and ``--config``) when run under the group, else the settings' default."""
    return Settings.load(_root_param(ctx, "config"), home=_root_param(ctx, "home")).home


def _progress_bar(futures: list) -> None:
    from distributed import progress

    with contextlib.redirect_stdout(sys.stderr):
        progress(futures, notebook=False)
        print(file=sys.stderr)


main = timelag_command

if __name__ == "__main__":  # pragma: no cover
    main()
