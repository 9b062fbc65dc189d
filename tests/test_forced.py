"""Forced photometry from patches read around each position: the same answer as the whole image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits

from skysift.alerts import forced
from skysift.alerts.forced import PATCH_CELLS, forced_snr
from skysift.core.astrometry import pixel_to_sky
from skysift.core.background import subtract_sky
from skysift.io.fits import Sections, read_image
from skysift.settings import BackgroundSettings

RADIUS_PX = 3.0


def whole_image_snr(path, x, y, settings):
    """The reference: sky estimated on the whole image, then the same apertures."""
    image = read_image(str(path))
    bkg, mask = subtract_sky(image.data, image.mask, settings)
    flux, err, _ = sep.sum_circle(image.data, x, y, RADIUS_PX, err=bkg.rms, mask=mask, subpix=5)
    return flux / err


def test_patches_agree_with_the_whole_image_and_find_faint_sources(make_sky):
    path, sky = make_sky(size=1024, n_stars=300, n_galaxies=0, seed=4)
    settings = BackgroundSettings()
    truth = sky.truth
    faint = np.flatnonzero((truth["snr_true"] > 8) & (truth["snr_true"] < 30))[:40]
    rng = np.random.default_rng(5)
    x = np.concatenate([truth["x"][faint], rng.uniform(0, 1023, 40), [-20.0]])
    y = np.concatenate([truth["y"][faint], rng.uniform(0, 1023, 40), [500.0]])
    wcs = read_image(str(path)).wcs
    ra, dec = pixel_to_sky(wcs, x, y)
    patch_area = (PATCH_CELLS * settings.box_px) ** 2
    assert 5 * patch_area < 1024 * 1024 // 2 <= len(x) * patch_area  # 5 positions: patches; all: the whole image
    patch_snr = np.concatenate([forced_snr(str(path), None, wcs, ra[i : i + 5], dec[i : i + 5], RADIUS_PX, settings)
                                for i in range(0, len(ra), 5)])
    whole_snr = forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings)  # many positions: read whole
    reference = whole_image_snr(path, x[:-1], y[:-1], settings)
    np.testing.assert_allclose(whole_snr[:-1], reference, rtol=1e-6, atol=1e-6)
    assert np.isnan(patch_snr[-1]) and np.isnan(whole_snr[-1])  # off the image
    difference = np.abs(patch_snr[:-1] - reference)
    assert np.median(difference) < 0.1 and difference.max() < 0.5
    assert np.all(patch_snr[: len(faint)] >= 5)  # every faint star shows its flux
    present = patch_snr[:-1] >= 3
    assert np.array_equal(present, reference >= 3)  # the rule decides the same way


def test_many_positions_on_a_large_image_are_read_patch_by_patch(make_sky, monkeypatch):
    path, sky = make_sky(size=512, n_stars=40, n_galaxies=0, seed=6)
    settings = BackgroundSettings()
    wcs = read_image(str(path)).wcs
    ra, dec = pixel_to_sky(wcs, sky.truth["x"][:20], sky.truth["y"][:20])
    one_by_one = np.array([forced_snr(str(path), None, wcs, ra[i : i + 1], dec[i : i + 1], RADIUS_PX, settings)[0]
                           for i in range(len(ra))])
    monkeypatch.setattr(forced, "WHOLE_READ_MAX_PIXELS", 512 * 512 - 1)  # this image counts as large
    shapes = []
    read = Sections.read
    monkeypatch.setattr(Sections, "read", lambda self, *box: shapes.append((box[1] - box[0], box[3] - box[2])) or read(self, *box))
    together = forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings)
    side = PATCH_CELLS * settings.box_px
    assert len(shapes) == len(ra) and max(h * w for h, w in shapes) <= side * side  # one patch per read, never the image
    np.testing.assert_array_equal(together, one_by_one)


def test_a_patch_mostly_masked_is_enlarged_until_the_sky_can_be_estimated(tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(2)
    n = 1024
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = ["RA---TAN", "DEC--TAN"], [10, 20], [n / 2, n / 2], [-1 / 3600, 1 / 3600]
    data = rng.normal(100, 5, (n, n)).astype(np.float32)
    data[300:700, :] = np.nan
    data[480:520, :] = rng.normal(100, 5, (40, n))  # a 40-row strip of empty sky inside a masked band
    path = tmp_path / "strip.fits"
    fits.PrimaryHDU(data, wcs.to_header()).writeto(path)
    ra, dec = wcs.all_pix2world([500.0], [500.0], 0)
    # a 256-px patch there is 84% masked: without enlarging it, SEP finds no sky and the SNR is ~500
    assert abs(forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, BackgroundSettings())[0]) < 3


def test_the_sky_of_an_image_read_whole_is_cached_for_the_next_ask(make_sky, tmp_path, monkeypatch):
    """Within sky_cache, an image read whole has its sky estimated once: later asks map the
    cached arrays and get the same SNRs; a rewritten file is not served from the cache."""
    path, _ = make_sky(size=512, n_stars=60, n_galaxies=0, seed=8)
    settings = BackgroundSettings()
    wcs = read_image(str(path)).wcs
    rng = np.random.default_rng(9)
    ra, dec = pixel_to_sky(wcs, rng.uniform(0, 511, 60), rng.uniform(0, 511, 60))  # many: read whole
    plain = forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings)
    estimates = []
    subtract = forced.subtract_sky
    monkeypatch.setattr(forced, "subtract_sky", lambda *args: estimates.append(1) or subtract(*args))
    folder = tmp_path / "skies"
    folder.mkdir()
    with forced.sky_cache(folder):
        first = forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings)
        again = forced_snr(str(path), None, wcs, ra[:40], dec[:40], RADIUS_PX, settings)
        assert len(estimates) == 1 and len(list(folder.glob("*.done"))) == 1
        np.testing.assert_array_equal(first, plain)
        np.testing.assert_array_equal(again, plain[:40])
        from astropy.io import fits

        with fits.open(path) as hdul:  # a new version of the file: its own sky
            hdul[0].data = hdul[0].data + np.float32(50.0)
            hdul.writeto(path, overwrite=True)
        forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings)
        assert len(estimates) == 2
    assert forced._sky_cache is None  # the block's end stops caching


def test_processes_asking_at_once_compute_an_images_sky_once(make_sky, tmp_path, monkeypatch):
    """Workers of an alert phase ask for the same earlier image at about the same time: one
    computes its sky, the others wait for it and map it (the same SNRs); a worker killed while
    computing holds nobody up (the kernel drops its lock)."""
    import multiprocessing
    import signal
    import time

    path, _ = make_sky(size=512, n_stars=60, n_galaxies=0, seed=8)
    settings = BackgroundSettings()
    wcs = read_image(str(path)).wcs
    rng = np.random.default_rng(9)
    ra, dec = pixel_to_sky(wcs, rng.uniform(0, 511, 60), rng.uniform(0, 511, 60))  # many: read whole
    plain = forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings)
    folder, log = tmp_path / "skies", tmp_path / "estimates.log"
    folder.mkdir()
    subtract = forced.subtract_sky

    def slow_subtract(*args):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(float(os.environ.get("SKY_DELAY_S", "0.5")))  # long enough for the others to ask meanwhile
        return subtract(*args)

    monkeypatch.setattr(forced, "subtract_sky", slow_subtract)

    def ask(queue):
        with forced.sky_cache(folder):
            queue.put(forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings).tolist())

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=ask, args=(queue,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert len(log.read_text().split()) == 1  # one estimate for three asks
    for result in results:
        np.testing.assert_array_equal(np.array(result, dtype=float), plain)

    # a worker killed while computing: the next one computes the sky itself at once
    for entry in folder.iterdir():
        entry.unlink()
    log.unlink()
    monkeypatch.setenv("SKY_DELAY_S", "60")
    doomed = context.Process(target=ask, args=(queue,))
    doomed.start()
    while not (log.exists() and log.read_text().strip()):  # its line written, not only the file opened
        time.sleep(0.01)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join()
    monkeypatch.setenv("SKY_DELAY_S", "0")
    started = time.monotonic()
    with forced.sky_cache(folder):
        np.testing.assert_array_equal(forced_snr(str(path), None, wcs, ra, dec, RADIUS_PX, settings), plain)
    assert time.monotonic() - started < forced.CLAIM_WAIT_S / 4
    assert len(log.read_text().split()) == 2


def test_the_skies_folder_is_in_memory_when_there_is_room_and_a_killed_runs_is_freed(tmp_path, monkeypatch):
    """sky_folder puts the alert phase's skies in the RAM-backed folder when it has room (a link
    in the home's folder names it), removes it at the block's end, and falls back to the home's
    folder without room; the next run frees what a killed one left in memory."""
    from skysift.pipeline.survey import _clean_after_killed_runs

    memory, home = tmp_path / "shm", tmp_path / "home"
    memory.mkdir()
    home.mkdir()
    monkeypatch.setattr(forced, "MEMORY_FOLDER", memory)
    anchor = home / ".running-skies-a"
    anchor.mkdir()
    with forced.sky_folder(anchor) as folder:
        assert Path(folder).parent == memory and (anchor / "memory").resolve() == Path(folder)
    assert not Path(folder).exists() and list(memory.iterdir()) == []

    monkeypatch.setattr(forced, "SKY_CACHE_MAX_BYTES", 2**62)  # no room
    with forced.sky_folder(anchor) as folder:
        assert folder == str(anchor)
    monkeypatch.setattr(forced, "SKY_CACHE_MAX_BYTES", 2**20)

    killed = home / ".running-skies-b"
    killed.mkdir()
    block = forced.sky_folder(killed)  # a run killed inside the block: its end never comes
    left = Path(block.__enter__())
    (left / "x.data.npy").write_bytes(b"0" * 100)
    _clean_after_killed_runs(home)
    assert not left.exists() and list(memory.iterdir()) == [] and list(home.iterdir()) == []


def test_sky_busy_while_another_computes_it(make_sky, tmp_path):
    """sky_busy says whether forced photometry would wait for the sky another process is
    computing (its lock held), not for a sky cached or never asked for."""
    import fcntl

    path, _ = make_sky(size=64, n_stars=3, n_galaxies=0, seed=1)
    settings = BackgroundSettings()
    folder = tmp_path / "skies"
    folder.mkdir()
    assert not forced.sky_busy(str(path), None, settings)  # no cache: never waits
    with forced.sky_cache(folder):
        assert not forced.sky_busy(str(path), None, settings)  # nobody computes it
        key = forced._cache_key(str(path), None, settings)
        holder = os.open(folder / f"{key}.lock", os.O_CREAT | os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: as another process holds it
        assert forced.sky_busy(str(path), None, settings)
        os.close(holder)
        assert not forced.sky_busy(str(path), None, settings)
        (folder / f"{key}.done").touch()
        assert not forced.sky_busy(str(path), None, settings)


def test_results_made_ahead_while_the_one_asked_for_is_busy():
    """The 'new source' rule asks for earlier images' SNRs in order: while one's sky is being
    computed elsewhere the next free ones are made first; each is made once, an error is
    raised when its result is asked for, and the results are those asked for."""
    from skysift.alerts.rules import _AheadWhileBusy
    from skysift.errors import SkysiftError

    made, busy = [], {0: 1, 1: 5, 3: 1}  # image -> times it is still found busy

    def measure(k):
        made.append(k)
        if k == 2:
            raise SkysiftError("gone")
        return k * 10

    def is_busy(k):
        if busy.get(k, 0) > 0:
            busy[k] -= 1
            return True
        return False

    ahead = _AheadWhileBusy([lambda k=k: measure(k) for k in range(5)], [lambda k=k: is_busy(k) for k in range(5)])
    assert ahead.result(0) == 0  # busy once: image 1 is busy too, 2 (failing) is made meanwhile
    assert made == [2, 0]
    assert ahead.result(1) == 10  # busy: 2 is made, 3 busy, 4 made meanwhile; then nothing left: it waits
    assert made == [2, 0, 4, 1]
    with pytest.raises(SkysiftError):
        ahead.result(2)
    assert (ahead.result(3), ahead.result(4)) == (30, 40) and made == [2, 0, 4, 1, 3]


def _with_holes(tmp_path, name, data, **cards):
    path = tmp_path / name
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


@pytest.mark.parametrize("kind", ["m13", "float_holes", "int_blank", "mosaic_extension"])
def test_the_sky_kept_while_measuring_is_the_sky_forced_photometry_computes(kind, m13_files, make_sky, tmp_path):
    """The frame a survey's measuring keeps (process_image's on_sky, then keep_sky) holds exactly the
    arrays forced photometry computes from the file read whole: real, NaN-holed, BLANK-masked, an extension."""
    from skysift.pipeline.image import process_image
    from skysift.settings import Settings

    rng = np.random.default_rng(5)
    hdu = None
    if kind == "m13":
        path = m13_files["plain"]
    elif kind == "float_holes":
        path, _ = make_sky(size=256, n_stars=30, n_galaxies=0, seed=4)
        with fits.open(path) as hdul:
            data = hdul[0].data.copy()
            data[rng.integers(0, 256, 300), rng.integers(0, 256, 300)] = np.nan
            data[10:20, 30:60] = np.inf
            path = _with_holes(tmp_path, "holes.fits", data, **{k: hdul[0].header[k] for k in ("CTYPE1", "CTYPE2")})
    elif kind == "int_blank":
        data = rng.normal(1000, 30, (200, 240)).astype(">i2")
        data[50:70, 5:9] = -32768
        path = _with_holes(tmp_path, "blank.fits", data, BSCALE=2.0, BZERO=10.0, BLANK=-32768)
    else:
        path = tmp_path / "mosaic.fits"
        ccd = rng.normal(100, 5, (180, 160)).astype(np.float32)
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(ccd * 0), fits.ImageHDU(ccd, name="CCD2")]).writeto(path)
        hdu = 2
    settings = Settings.load(home=tmp_path / "home")
    folder = tmp_path / "skies"
    folder.mkdir()
    kept = []
    result = process_image(str(path), settings, hdu=hdu, on_sky=lambda info, *arrays: (
        kept.append(info), forced.keep_sky(folder, settings.background, info, *arrays)))
    assert result.record.status.value == "ok" and len(kept) == 1
    info = kept[0]
    with forced.sky_cache(folder):
        key = forced._cache_key(info.uri, info.hdu, settings.background)
        stored = forced._load_sky(key)
    with Sections(info.uri, info.hdu) as image:
        computed = forced._whole_sky(image, None, settings.background)
    assert stored is not None and computed is not None
    for mine, theirs in zip(stored, computed, strict=True):
        if theirs is None:
            assert mine is None
        else:
            np.testing.assert_array_equal(mine, theirs)
            assert mine.dtype == theirs.dtype
    assert (computed[2] is not None) == (kind in ("float_holes", "int_blank"))


def test_a_sky_is_kept_while_another_process_renames_its_files_in_the_folder(tmp_path, monkeypatch):
    """Two measuring workers keep their skies in one folder at once: a file the other renames between
    the listing and its size no longer makes this one give up (a survey's visit went unkept so)."""
    folder = tmp_path / "skies"
    folder.mkdir()
    (folder / "other.data.123.tmp").write_bytes(b"x" * 100)
    (folder / "kept.done").touch()
    real_scandir = os.scandir

    def listing_then_renamed(path):
        entries = list(real_scandir(path))
        os.replace(folder / "other.data.123.tmp", folder / "other.data.npy")  # the other worker, meanwhile
        return iter(entries)

    monkeypatch.setattr(forced.os, "scandir", listing_then_renamed)
    data = np.ones((8, 8), np.float32)
    with forced.sky_cache(folder):
        assert forced._store_sky("mine", data, data, None)
    assert (folder / "mine.done").exists() and (folder / "mine.data.npy").exists()
