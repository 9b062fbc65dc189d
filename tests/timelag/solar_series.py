"""Synthetic solar image series built on sunpy's real AIA 171 level-1 header, with known truth.

Frames are written as real FITS files whose headers are the AIA header with the
geometry, time, wavelength, exposure and observer (Earth at that instant) updated.
The emission is defined on the solar surface at the reference time, in
heliocentric-inertial longitude/latitude, and carried to each frame's time with the
Howard et al. (1990) sidereal rotation rates computed here from the published
coefficients -- independently of sunpy's ``propagate_with_solar_surface``, which the
pipeline under test uses.
"""

from __future__ import annotations

import functools
import importlib.resources
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from sunpy.coordinates import HeliocentricInertial, HeliographicStonyhurst, get_earth

from skysift.alerts.log import LogPublisher
from skysift.catalog.tables import LocalTables
from skysift.pipeline.image import ingest_image
from skysift.settings import Settings

AIA_171 = importlib.resources.files("sunpy.data.test") / "aia_171_level1.fits"
T0 = datetime(2011, 2, 15, 0, 0, 0, tzinfo=UTC)
#: Howard et al. (1990) sidereal rates, microrad/s: A + B sin^2(lat) + C sin^4(lat).
HOWARD = (2.894, -0.428, -0.370)
#: Observer/geometry keywords of the real header that would contradict a new time: dropped.
STALE_KEYWORDS = ("HAEX_OBS", "HAEY_OBS", "HAEZ_OBS", "GAEX_OBS", "GAEY_OBS", "GAEZ_OBS",
                  "OBS_VR", "OBS_VW", "OBS_VN", "CAR_ROT", "T_OBS", "DATE", "DATAMEAN", "DATARMS")


@functools.cache
def _aia_header() -> fits.Header:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # float data with a stray BLANK card
        return fits.getheader(AIA_171)


def aia_header() -> fits.Header:
    """A copy of the primary header of sunpy's test file ``aia_171_level1.fits``."""
    return _aia_header().copy()


def howard_rotation_rad(dt_s: np.ndarray | float, lat_rad: np.ndarray) -> np.ndarray:
    """Sidereal rotation (radians) of the solar surface at latitude ``lat_rad`` after ``dt_s`` seconds."""
    s2 = np.sin(lat_rad) ** 2
    return (HOWARD[0] + HOWARD[1] * s2 + HOWARD[2] * s2**2) * 1e-6 * dt_s


def frame_header(when: datetime, wavelength: float, shape: tuple[int, int], scale_arcsec: float,
                 center_arcsec: tuple[float, float], exptime_s: float) -> fits.Header:
    """The real AIA header, re-pointed and re-timed, with the observer at Earth at ``when``."""
    header = aia_header()
    for key in STALE_KEYWORDS:
        header.remove(key, ignore_missing=True)
    ny, nx = shape
    earth = get_earth(when.replace(tzinfo=None).isoformat())
    header.update(
        NAXIS1=nx, NAXIS2=ny, CDELT1=scale_arcsec, CDELT2=scale_arcsec,
        CRPIX1=(nx + 1) / 2, CRPIX2=(ny + 1) / 2, CRVAL1=center_arcsec[0], CRVAL2=center_arcsec[1],
        CROTA2=0.0, DATE_OBS=None,
    )
    header["DATE-OBS"] = when.replace(tzinfo=None).isoformat(timespec="milliseconds")
    header.update(
        WAVELNTH=int(wavelength), WAVE_STR=f"{int(wavelength)}_THIN", EXPTIME=float(exptime_s),
        HGLN_OBS=0.0, HGLT_OBS=float(earth.lat.deg), DSUN_OBS=float(earth.radius.to_value(u.m)),
        CRLN_OBS=float(earth.transform_to(sunpy.coordinates.HeliographicCarrington(observer="earth", obstime=earth.obstime)).lon.deg),
        CRLT_OBS=float(earth.lat.deg),
    )
    header.remove("DATE_OBS", ignore_missing=True)
    header.remove("BLANK", ignore_missing=True)  # the pixels written are float32
    return header


def surface_coords(header: fits.Header, t_ref: datetime) -> tuple[np.ndarray, np.ndarray]:
    """HCI longitude and latitude (radians) at ``t_ref`` of each pixel's surface point (NaN off disk)."""
    smap = sunpy.map.Map(np.zeros((header["NAXIS2"], header["NAXIS1"])), header)
    ny, nx = smap.data.shape
    xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
    hci = smap.pixel_to_world(xx * u.pix, yy * u.pix).transform_to(HeliocentricInertial(obstime=smap.date))
    lat = hci.lat.to_value(u.rad)
    dt_s = (smap.date.to_datetime(timezone=UTC) - t_ref).total_seconds()
    lon = hci.lon.to_value(u.rad) - howard_rotation_rad(dt_s, lat)
    return lon, lat


def surface_point(lon_deg: float, lat_deg: float, when: datetime) -> tuple[float, float]:
    """HCI (lon, lat) in radians of a Stonyhurst surface point at ``when``."""
    hgs = SkyCoord(lon_deg * u.deg, lat_deg * u.deg, 695_700 * u.km,
                   frame=HeliographicStonyhurst(obstime=when.replace(tzinfo=None).isoformat()))
    hci = hgs.transform_to(HeliocentricInertial(obstime=hgs.obstime))
    return float(hci.lon.to_value(u.rad)), float(hci.lat.to_value(u.rad))


def _surface_behind(arcsec: tuple[float, float], when: datetime) -> tuple[float, float]:
    """HCI (lon, lat) in radians of the surface point seen at helioprojective ``arcsec`` from Earth."""
    stamp = when.replace(tzinfo=None).isoformat()
    frame = sunpy.coordinates.Helioprojective(observer=get_earth(stamp), obstime=stamp)
    hci = SkyCoord(arcsec[0] * u.arcsec, arcsec[1] * u.arcsec, frame=frame).transform_to(HeliocentricInertial(obstime=stamp))
    return float(hci.lon.to_value(u.rad)), float(hci.lat.to_value(u.rad))


def write_frame(path: Path, header: fits.Header, counts: np.ndarray) -> Path:
    fits.PrimaryHDU(counts.astype(np.float32), header).writeto(path, overwrite=True)
    return path


def write_images_index(home: Path, paths: list[Path]) -> None:
    """Index ``paths`` into ``home``'s tables with skysift's own ``ingest_image``, as ``skysift run`` does."""
    settings = Settings(home=home)
    store, publisher = LocalTables(home), LogPublisher(home)
    for path in paths:
        summary = ingest_image(str(path), settings, store=store, publisher=publisher)
        assert summary.status == "indexed", summary


@dataclass
class LagSeries:
    """A two-channel series on disk, indexed under ``home``, with its truth."""

    home: Path
    paths_a: list[Path]
    paths_b: list[Path]
    center_arcsec: tuple[float, float]
    fov_arcsec: tuple[float, float]
    scale_arcsec: float
    cadence_s: float
    lag_truth_s: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (lon, lat) at T0 -> lag in s
    start: datetime
    end: datetime


def _pulse_train(rng: np.random.Generator, t_lo: float, t_hi: float) -> Callable[[np.ndarray], np.ndarray]:
    n = int((t_hi - t_lo) / 1500) + 2
    centres = rng.uniform(t_lo, t_hi, n)
    widths = rng.uniform(360, 720, n)
    amps = rng.uniform(0.5, 1.5, n)

    def train(t: np.ndarray) -> np.ndarray:
        return np.sum(amps[:, None] * np.exp(-0.5 * ((t.ravel()[None] - centres[:, None]) / widths[:, None]) ** 2),
                      axis=0).reshape(t.shape)

    return train


@dataclass
class SeriesFrame:
    """One synthetic frame before it is written anywhere: time, channel, real-shaped header, counts (DN)."""

    when: datetime
    wavelength: int
    header: fits.Header
    counts: np.ndarray


@dataclass
class LagFrames:
    """The frames of a two-channel lag series (A = 193, B = 171) with the truth and the window."""

    frames: list[SeriesFrame]
    center_arcsec: tuple[float, float]
    lag_truth_s: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (lon, lat) at T0 -> lag in s
    start: datetime
    end: datetime


def lag_series_frames(*, n_frames: int = 60, shape: tuple[int, int] = (64, 64), scale_arcsec: float = 4.0,
                      cadence_s: float = 240.0, seed: int = 5) -> LagFrames:
    """Channel A (193) and channel B (171) = A delayed by a lag that varies across the surface.

    Channel B is sampled 40 s after A, both with +-10 s jitter; exposures vary between
    1.5 and 2.9 s and the counts scale with them; 0.3 % noise.
    """
    rng = np.random.default_rng(seed)
    center = (-125.0, 250.0)
    lon_c, lat_c = _surface_behind(center, T0)
    trains = [_pulse_train(rng, -7200.0, n_frames * cadence_s + 3600.0) for _ in range(6)]
    blob_u, blob_v = rng.uniform(-0.08, 0.08, (2, 6))  # radians on the surface

    def local(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (lon - lon_c) * np.cos(lat_c), lat - lat_c

    def lag_truth(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        uu, vv = local(lon, lat)
        return np.clip(900.0 + 20000.0 * uu + 8000.0 * vv, 0.0, 1800.0)  # 0 .. 30 min

    def signal(lon: np.ndarray, lat: np.ndarray, t: np.ndarray) -> np.ndarray:
        uu, vv = local(lon, lat)
        weights = np.exp(-0.5 * ((uu[None] - blob_u[:, None, None]) ** 2 + (vv[None] - blob_v[:, None, None]) ** 2) / 0.04**2)
        weights += 0.05
        mix = sum(w * train(t) for w, train in zip(weights, trains, strict=True))
        return mix / weights.sum(axis=0)

    frames = []
    for k in range(n_frames):
        for channel, wavelength, offset in (("a", 193, 0.0), ("b", 171, 40.0)):
            t_s = k * cadence_s + offset + rng.uniform(-10, 10)
            when = T0 + timedelta(seconds=t_s)
            exptime = rng.uniform(1.5, 2.9)
            header = frame_header(when, wavelength, shape, scale_arcsec, center, exptime)
            lon, lat = surface_coords(header, T0)
            if channel == "a":
                rate = 100.0 + 400.0 * signal(lon, lat, np.full(lon.shape, t_s))
            else:
                rate = 80.0 + 300.0 * signal(lon, lat, t_s - lag_truth(lon, lat))
            rate *= 1 + 0.003 * rng.standard_normal(rate.shape)
            frames.append(SeriesFrame(when, wavelength, header, rate * exptime))
    end = T0 + timedelta(seconds=n_frames * cadence_s + 60)
    return LagFrames(frames, center, lag_truth, T0 - timedelta(seconds=30), end)


def make_lag_series(root: Path, *, n_frames: int = 60, shape: tuple[int, int] = (64, 64), scale_arcsec: float = 4.0,
                    cadence_s: float = 240.0, seed: int = 5) -> LagSeries:
    """:func:`lag_series_frames` written as FITS files under ``root/frames`` and indexed under ``root/home``."""
    series = lag_series_frames(n_frames=n_frames, shape=shape, scale_arcsec=scale_arcsec, cadence_s=cadence_s, seed=seed)
    home = root / "home"
    folder = root / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[int, list[Path]] = {193: [], 171: []}
    for frame in series.frames:
        k = len(paths[frame.wavelength])
        paths[frame.wavelength].append(write_frame(folder / f"aia_{frame.wavelength}_{k:03d}.fits", frame.header, frame.counts))
    write_images_index(home, paths[193] + paths[171])
    return LagSeries(home, paths[193], paths[171], series.center_arcsec, (160.0, 160.0), scale_arcsec, cadence_s,
                     series.lag_truth_s, series.start, series.end)


@dataclass
class RotationSeries:
    """Frames of one channel showing a compact feature fixed on the rotating solar surface."""

    home: Path
    paths: list[Path]
    feature_hgs_deg: tuple[float, float]  # Stonyhurst (lon, lat) at T0
    center_arcsec: tuple[float, float]  # where the feature appears at T0
    scale_arcsec: float
    start: datetime
    end: datetime


def _angular_distance(lon1, lat1, lon2, lat2):  # radians in, radians out
    cos_d = np.sin(lat1) * np.sin(lat2) + np.cos(lat1) * np.cos(lat2) * np.cos(lon1 - lon2)
    return np.arccos(np.clip(cos_d, -1.0, 1.0))


def _apparent_arcsec(lon_hci: float, lat_hci: float, when: datetime) -> tuple[float, float]:
    stamp = when.replace(tzinfo=None).isoformat()
    point = SkyCoord(lon_hci * u.rad, lat_hci * u.rad, 695_700 * u.km, frame=HeliocentricInertial(obstime=stamp))
    hpc = point.transform_to(sunpy.coordinates.Helioprojective(observer=get_earth(stamp), obstime=stamp))
    return float(hpc.Tx.to_value(u.arcsec)), float(hpc.Ty.to_value(u.arcsec))


def make_rotation_series(root: Path, *, hours: tuple[float, ...] = (0, 4, 8, 12), shape: tuple[int, int] = (64, 64),
                         scale_arcsec: float = 4.0, feature_hgs_deg: tuple[float, float] = (-10.0, 15.0),
                         sigma_deg: float = 1.0) -> RotationSeries:
    """A Gaussian feature (sigma ``sigma_deg`` on the sphere) at ``feature_hgs_deg`` at T0, on fixed-pointing frames."""
    lon_f, lat_f = surface_point(*feature_hgs_deg, T0)
    middle = T0 + timedelta(hours=hours[len(hours) // 2] if len(hours) > 2 else hours[-1] / 2)
    rotated = lon_f + howard_rotation_rad((middle - T0).total_seconds(), np.array(lat_f))
    pointing = _apparent_arcsec(float(rotated), lat_f, middle)
    frames = root / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, hour in enumerate(hours):
        when = T0 + timedelta(hours=hour)
        header = frame_header(when, 171, shape, scale_arcsec, pointing, 2.0)
        lon, lat = surface_coords(header, T0)
        distance = _angular_distance(lon, lat, lon_f, lat_f)
        rate = 100.0 + 1000.0 * np.exp(-0.5 * (distance / np.radians(sigma_deg)) ** 2)
        rate = np.where(np.isfinite(rate), rate, 100.0)
        paths.append(write_frame(frames / f"aia_171_rot_{k:02d}.fits", header, rate * 2.0))
    home = root / "home"
    write_images_index(home, paths)
    return RotationSeries(home, paths, feature_hgs_deg, _apparent_arcsec(lon_f, lat_f, T0), scale_arcsec,
                          T0 - timedelta(minutes=1), T0 + timedelta(hours=hours[-1], minutes=1))


def centroid_px(image: np.ndarray, floor: float) -> tuple[float, float]:
    """Intensity-weighted (x, y) of the pixels more than 10 % of the peak above ``floor``."""
    excess = np.nan_to_num(image - floor)
    excess[excess < 0.1 * excess.max()] = 0.0
    yy, xx = np.indices(image.shape)
    return float((xx * excess).sum() / excess.sum()), float((yy * excess).sum() / excess.sum())


def lag_request(series: LagSeries, output: Path, **overrides) -> dict:
    """The JSON-able request for ``series`` (193 -> 171), as the CLI or Step Functions would build it."""
    request = {
        "channel_a": 193, "channel_b": 171, "start": series.start.isoformat(), "end": series.end.isoformat(),
        "center_arcsec": list(series.center_arcsec), "fov_arcsec": list(series.fov_arcsec),
        "cadence_s": series.cadence_s, "max_lag_s": 2400.0, "instrument": "AIA",
        "index": str(series.home), "output": str(output),
    }
    request.update(overrides)
    return request
