"""Forced photometry: flux at given sky positions in an image, detected there or not.

Used by the 'new source' alert rule to look at the earlier images themselves rather
than only their catalogs: a source that was there but blended or below the
detection threshold shows flux at its position; a true transient does not.

Each position is measured on a patch of :data:`PATCH_CELLS` x :data:`PATCH_CELLS`
background cells read around it (a section, not the whole image), with the sky and
its noise estimated on that patch by the same mesh estimator as a whole image uses.
When there are so many positions that their patches would cover half the image, an
image of up to :data:`WHOLE_READ_MAX_PIXELS` is read and its sky estimated once instead.

A survey asks again for every earlier image of a field, once per later image: within
:func:`sky_cache` (``skysift run``'s alert phase) the sky-subtracted pixels and noise map
of an image read whole are kept in a folder and memory-mapped when asked for again
(SEP's mesh estimate, reading and subtracting are done once per image and run; later asks
do not open the file, and read back only the pages under the apertures): the same arrays,
so the same SNRs. A survey run's measuring puts them there already (:func:`keep_sky`) for the
images that others of the run overlap. :func:`sky_folder` puts that folder in memory (``/dev/shm``) when the
machine has one with room: writing 36 MiB per 2048 x 2048 image to a disk's file system
cost a third of the phase's forced photometry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sep
from astropy.wcs import WCS

from skysift.core.astrometry import sky_to_pixel
from skysift.core.background import subtract_sky
from skysift.io import storage
from skysift.io.fits import ImageInfo, Sections
from skysift.settings import BackgroundSettings

__all__ = [
    "MAX_MASKED_FRACTION",
    "PATCH_CELLS",
    "SKY_CACHE_MAX_BYTES",
    "WHOLE_READ_MAX_PIXELS",
    "forced_snr",
    "keep_sky",
    "remove_sky_folder",
    "sky_busy",
    "sky_cache",
    "sky_folder",
    "use_sky_cache",
]

log = logging.getLogger(__name__)

#: Side of the patch read around a position, in background cells (four cells is the
#: smallest patch on which the background keeps its configured cell size).
PATCH_CELLS = 4
#: Largest image (pixels, 64 MiB of float32) read whole when positions are many; larger
#: images are always read patch by patch, so memory stays bounded whatever the image.
WHOLE_READ_MAX_PIXELS = 4096 * 4096
#: A patch more masked than this is enlarged: SEP needs unmasked cells to estimate the sky.
MAX_MASKED_FRACTION = 0.5


def _patch_bounds(centre: float, size: int, side: int) -> tuple[int, int]:
    """[start, stop) of a ``side``-pixel window around ``centre``, kept inside [0, size)."""
    start = min(max(0, int(np.rint(centre)) - side // 2), max(0, size - side))
    return start, min(size, start + side)


def _read_patch(image: Sections, x: float, y: float, side: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The patch around (x, y), doubled in size while more than half of it is masked (the
    sky needs unmasked cells to be estimated from), up to the whole image."""
    ny, nx = image.shape
    while True:
        box = (*_patch_bounds(y, ny, side), *_patch_bounds(x, nx, side))
        data, mask = image.read(*box)
        if mask.mean() <= MAX_MASKED_FRACTION or (box[1] - box[0] == ny and box[3] - box[2] == nx):
            return box, data, mask
        side *= 2


#: Bytes of sky-subtracted images (9 bytes a pixel) a :func:`sky_cache` folder holds at
#: most; images beyond it are computed again each time they are asked for.
SKY_CACHE_MAX_BYTES = 2 * 2**30
_sky_cache: Path | None = None


@contextmanager
def sky_cache(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Within the block (in this process), keep the skies of images read whole in ``folder``
    (see the module's docstring); the caller removes the folder afterwards."""
    previous = _sky_cache
    use_sky_cache(folder)
    try:
        yield
    finally:
        use_sky_cache(previous)


def use_sky_cache(folder: str | os.PathLike[str] | None) -> None:
    """Keep the skies of images read whole in ``folder`` from now on in this process (None: do not);
    for the initializer of a pool's worker processes, which share the folder."""
    global _sky_cache
    _sky_cache = None if folder is None else Path(folder)


def _cache_key(uri: str, hdu: int | str | None, background: BackgroundSettings) -> str | None:
    """The name of an image's cached sky: its location, HDU, file version and the sky settings."""
    version = storage.local_version(uri) if _sky_cache is not None else None
    if version is None:
        return None
    path, inode, size, mtime_ns = version
    key = [path, hdu, inode, size, mtime_ns, background.model_dump()]
    return hashlib.blake2b(json.dumps(key).encode(), digest_size=12).hexdigest()


def _load_sky(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    folder = _sky_cache
    if not (folder / f"{key}.done").exists():
        return None
    try:  # copy-on-write maps: SEP takes writable buffers only (it never writes to them)
        data = np.load(folder / f"{key}.data.npy", mmap_mode="c")
        rms = np.load(folder / f"{key}.rms.npy", mmap_mode="c")
        mask_path = folder / f"{key}.mask.npy"
        return data, rms, (np.load(mask_path, mmap_mode="c") if mask_path.exists() else None)
    except (OSError, ValueError):
        return None


def _held_bytes(folder: Path) -> int:
    """The bytes of the files in ``folder``. Another process saving a sky renames its temporary
    files meanwhile: an entry gone between the listing and its size is not counted (it had
    made this save give up, and a survey's sky go unkept)."""
    held = 0
    for entry in os.scandir(folder):
        with contextlib.suppress(FileNotFoundError):
            held += entry.stat().st_size if entry.is_file() else 0
    return held


def _store_sky(key: str, data: np.ndarray, rms: np.ndarray, mask: np.ndarray | None) -> bool:
    """Save an image's sky for the next ask, atomically (two workers may save the same one)
    and only while the folder holds less than :data:`SKY_CACHE_MAX_BYTES`; whether it was saved."""
    folder = _sky_cache
    try:
        held = _held_bytes(folder)
        if held + data.nbytes + rms.nbytes + (0 if mask is None else mask.nbytes) > SKY_CACHE_MAX_BYTES:
            return False
        for name, array in (("data", data), ("rms", rms), ("mask", mask)):
            if array is not None:
                temporary = folder / f"{key}.{name}.{os.getpid()}.tmp"
                with open(temporary, "wb") as handle:
                    np.save(handle, array)
                os.replace(temporary, folder / f"{key}.{name}.npy")
        (folder / f"{key}.done").touch()
    except OSError as exc:  # a full disk or a removed folder: the next ask computes it again
        log.debug("sky %s not saved for forced photometry: %s", key, exc)
        return False
    return True


def keep_sky(folder: str | os.PathLike[str], background: BackgroundSettings, image: ImageInfo,
             data: np.ndarray, rms: np.ndarray, mask: np.ndarray | None) -> None:
    """Keep in the :func:`sky_cache` ``folder`` the sky of ``image`` computed elsewhere: what
    :func:`subtract_sky` made of it read whole with ``background`` (``data`` subtracted, its
    noise map ``rms`` and ``mask``), the same arrays forced photometry would compute. Its
    arguments after ``background`` are a :data:`~skysift.pipeline.image.ImageSkySink`'s.

    A survey's measuring subtracts the sky of each image anyway: kept then, the alert phase
    neither reads the image again nor estimates its sky a second time."""
    with sky_cache(folder):
        key = _cache_key(image.uri, image.hdu, background)
        if key is not None and not (_sky_cache / f"{key}.done").exists() and _store_sky(key, data, rms, mask):
            log.debug("%s: sky kept for forced photometry", image.uri)


#: A RAM-backed file system: the skies' folder goes there when it has room (:func:`sky_folder`).
MEMORY_FOLDER = Path("/dev/shm")
#: Prefix of a skies' folder in :data:`MEMORY_FOLDER`; the name of the link to it in the home's folder.
_MEMORY_PREFIX, _MEMORY_LINK = "skysift-skies-", "memory"


@contextmanager
def sky_folder(anchor: str | os.PathLike[str]) -> Iterator[str]:
    """The folder for a :func:`sky_cache` while the block runs: a new one in
    :data:`MEMORY_FOLDER` when it has twice :data:`SKY_CACHE_MAX_BYTES` free (removed at the
    block's end), else ``anchor`` itself (a folder of the home, the caller's to remove).

    The memory folder is linked from ``anchor`` (``anchor/memory``), so that what a killed
    run left in memory is found and freed with its anchor (:func:`remove_sky_folder`)."""
    memory = None
    try:
        room = os.statvfs(MEMORY_FOLDER)
        if room.f_bavail * room.f_frsize >= 2 * SKY_CACHE_MAX_BYTES:
            memory = tempfile.mkdtemp(prefix=_MEMORY_PREFIX, dir=MEMORY_FOLDER)
            os.symlink(memory, Path(anchor) / _MEMORY_LINK)
    except OSError:  # no such file system, no room, or no link: the home's folder
        if memory is not None:
            shutil.rmtree(memory, ignore_errors=True)
        memory = None
    try:
        yield str(anchor) if memory is None else memory
    finally:
        if memory is not None:
            shutil.rmtree(memory, ignore_errors=True)


def remove_sky_folder(anchor: str | os.PathLike[str]) -> None:
    """Remove ``anchor`` and the memory folder it links to (what a killed :func:`sky_folder` left)."""
    link = Path(anchor) / _MEMORY_LINK
    with contextlib.suppress(OSError):
        target = Path(os.readlink(link))
        if target.parent == MEMORY_FOLDER and target.name.startswith(_MEMORY_PREFIX):
            shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(anchor, ignore_errors=True)


#: How long a process waits for the sky another one is computing (seconds) before computing it too.
CLAIM_WAIT_S = 120.0
_CLAIM_POLL_S = 0.005


@contextmanager
def _computing(key: str) -> Iterator[None]:
    """Held while this process computes the sky under ``key``: an exclusive ``flock`` on
    ``{key}.lock`` in the cache folder, taken after the process holding it (if any) is done,
    or after :data:`CLAIM_WAIT_S`. The kernel releases it when its holder ends, dead or alive,
    so a worker that died computing a sky never holds the others up. No lock file (an
    unwritable folder): compute without one."""
    try:
        handle = os.open(_sky_cache / f"{key}.lock", os.O_CREAT | os.O_RDWR)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + CLAIM_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break  # too long: compute it too
                time.sleep(_CLAIM_POLL_S)
        yield
    finally:
        os.close(handle)  # releases the lock


def sky_busy(uri: str, hdu: int | str | None, background: BackgroundSettings) -> bool:
    """Whether another process is computing this image's sky for the cache right now (forced
    photometry reading the image whole would wait for it): the caller may do other work first."""
    key = _cache_key(uri, hdu, background)
    if key is None or (_sky_cache / f"{key}.done").exists():
        return False
    try:
        handle = os.open(_sky_cache / f"{key}.lock", os.O_RDWR)  # no lock file: nobody computes it
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: taken here, released by the close
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def _whole_sky(image: Sections, key: str | None,
               background: BackgroundSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The whole image, sky-subtracted (masked pixels 0), its noise map and mask (None when
    nothing is masked), kept under ``key`` when the cache is on; None when every pixel is masked.

    With the cache on, two processes never compute one image's sky at once: the second waits
    for the first (:func:`_computing`) and maps what it stored (the same arrays), as the workers
    of a survey's alert phase all ask for the same earlier images at about the same time."""
    with _computing(key) if key is not None else contextlib.nullcontext():
        if key is not None and (cached := _load_sky(key)) is not None:
            return cached
        ny, nx = image.shape
        data, mask = image.read(0, ny, 0, nx)
        if mask.all():
            return None
        log.debug("%s: sky estimated for forced photometry", image.uri)
        bkg, mask = subtract_sky(data, mask, background)
        if key is not None:
            _store_sky(key, data, bkg.rms, mask)
        return data, bkg.rms, mask


def forced_snr(uri: str, hdu: int | str | None, wcs: WCS, ra_deg: np.ndarray, dec_deg: np.ndarray,
               radius_px: float, background: BackgroundSettings) -> np.ndarray:
    """SNR of the background-subtracted flux in circles of ``radius_px`` at each position.

    ``wcs`` is the image's WCS. Positions off the image (or on masked pixels only) get NaN.
    """
    x, y = sky_to_pixel(wcs, ra_deg, dec_deg)
    snr = np.full(len(x), np.nan)
    side = PATCH_CELLS * background.box_px

    def measure(data, rms, mask, chosen, x0: int, y0: int) -> None:
        flux, err, flag = sep.sum_circle(data, x[chosen] - x0, y[chosen] - y0, radius_px, err=rms, mask=mask, subpix=5)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr[chosen] = np.where((err > 0) & ((flag & sep.APER_ALLMASKED) == 0), flux / err, np.nan)

    def inside_and_whole(ny: int, nx: int) -> tuple[np.ndarray, bool]:
        """The positions on the image, and whether to read it whole: when the patches would
        cover half of a modest image, it is read once instead."""
        inside = np.flatnonzero((x >= 0) & (y >= 0) & (x <= nx - 1) & (y <= ny - 1))
        return inside, inside.size * side * side >= nx * ny // 2 and nx * ny <= WHOLE_READ_MAX_PIXELS

    key = _cache_key(uri, hdu, background)
    if key is not None and (cached := _load_sky(key)) is not None:
        inside, whole = inside_and_whole(*cached[0].shape)
        if whole:  # the file is not even opened
            measure(*cached, inside, 0, 0)
            return snr
    with Sections(uri, hdu) as image:
        inside, whole = inside_and_whole(*image.shape)
        if whole:
            if (sky := _whole_sky(image, key, background)) is not None:
                measure(*sky, inside, 0, 0)
            return snr
        for k in inside:
            (y0, _, x0, _), data, mask = _read_patch(image, x[k], y[k], side)
            if mask.all():
                continue
            bkg, mask = subtract_sky(data, mask, background)
            measure(data, bkg.rms, mask, [k], x0, y0)
    return snr
