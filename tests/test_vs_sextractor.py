"""skysift against Source Extractor 2.25 on the same images, as sep's ``test_vs_sextractor`` does.

The reference catalogs are committed in ``tests/data/sextractor`` with the exact
configuration (``skysift.sex``, ``skysift.param``, ``gauss_3.0_7x7.conv``: skysift's
defaults in Source Extractor's terms) and the commands that made them (README.md,
``reference.json``), so this test never needs the binary. Images: astropy's
``m13.fits`` (a crowded globular cluster), astroquery's UKIDSS (the Crab nebula) and
MAGPIS (a radio image) test images, and a 512^2 synthetic sky; each also negated, where
every detection is false. Source Extractor ran at two thresholds: ``nominal``, 5 sigma
for white noise, and ``matched``, the same true significance skysift detects at
(times the image's ``noise_correlation_factor``).

Tolerances (module constants below):

- filtered significance on source-free sky: spread 1.0 +- 0.1 (MAD), on every image;
- negated images: no more detections than Source Extractor at either threshold, edges included;
- duplicates: no two sources within 1.5 px (Source Extractor has none either);
- matching within 2 px: counts within max(2, 5%), at most max(2, 10%) of either
  catalog unmatched;
- isolated sources (no other Source Extractor source within 10 px, its FLAGS 0): Kron
  flux median |ratio - 1| <= 0.005, 3 px aperture <= 0.01, median position offset
  <= 0.02 px; all matched sources (blends too): median offset <= 0.15 px;
- all matched sources, neighbours corrected in the Kron aperture as Source Extractor's
  ``MASK_TYPE CORRECT`` corrects them: |Kron ratio - 1| median <= 0.01, 90th percentile
  <= 0.1; APER_CONTAMINATED where Source Extractor sets its flag 1 for >= 90% of them.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sep
from astropy.io import ascii, fits
from astropy.stats import mad_std
from scipy import ndimage
from scipy.spatial import cKDTree

from skysift.core import flags as F
from skysift.core.background import subtract_sky
from skysift.core.detection import detection_kernel
from skysift.io.fits import read_image
from skysift.pipeline.image import process_image
from skysift.settings import Settings

REFERENCE = Path(__file__).parent / "data" / "sextractor"
MANIFEST = json.loads((REFERENCE / "reference.json").read_text())
IMAGES = sorted(MANIFEST["images"])
REAL_IMAGES = [name for name in IMAGES if MANIFEST["images"][name]["package"]]

SPREAD_TOLERANCE = 0.1
DUPLICATE_RADIUS_PX = 1.5
MATCH_RADIUS_PX = 2.0
ISOLATION_PX = 10.0
MAX_COUNT_DIFFERENCE = (2, 0.05)  # (sources, fraction): whichever is larger
MAX_UNMATCHED = (2, 0.10)
ISOLATED_KRON_FLUX = 0.005  # median |skysift / Source Extractor - 1|
ISOLATED_APERTURE_FLUX = 0.01
ISOLATED_POSITION_PX = 0.02  # median offset
MATCHED_POSITION_PX = 0.15


def image_path(name: str) -> Path:
    entry = MANIFEST["images"][name]
    if entry["package"]:  # shipped inside an installed package
        return Path(str(importlib.resources.files(entry["package"]).joinpath(*entry["path"].split("/"))))
    return REFERENCE / entry["path"]


def reference(name: str, kind: str):
    """Source Extractor's catalog of ``name`` (``nominal``/``matched``, ``_negated``), 0-based pixels."""
    table = ascii.read(REFERENCE / MANIFEST["images"][name]["catalogs"][kind]["file"], format="sextractor")
    for axis in ("X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE"):
        table[axis] = np.asarray(table[axis], dtype=np.float64) - 1.0  # (an empty catalog reads as integers)
    return table


def negated_copy(name: str, folder: Path) -> Path:
    """The image HDU times -1 in a single-HDU file, as make_reference.py writes it for Source Extractor."""
    entry = MANIFEST["images"][name]
    with fits.open(image_path(name)) as hdul:
        header = hdul[entry["hdu"]].header.copy()
        data = -np.asarray(hdul[entry["hdu"]].data, dtype=np.float32)
    for key in ("BZERO", "BSCALE", "BLANK", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME"):
        header.remove(key, ignore_missing=True)
    path = folder / f"{name}_negated.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    return path


#: Source Extractor ran with gauss_3.0_7x7.conv: skysift uses the same filter here, not the one its
#: default would take from a header's seeing (UKIDSS's SEEING = 3.8 px).
SAME_FILTER = {"detection__filter_fwhm_px": 3.0}


@pytest.fixture(scope="module")
def skysift(tmp_path_factory):
    """skysift's result for an image name (``name`` or ``name_negated``), measured once."""
    folder = tmp_path_factory.mktemp("vs_sextractor")
    settings = Settings.load(home=folder / "home", **SAME_FILTER)

    @cache
    def run(key: str):
        name = key.removesuffix("_negated")
        hdu = MANIFEST["images"][name]["hdu"]
        path, hdu = (negated_copy(name, folder), 0) if key.endswith("_negated") else (image_path(name), hdu)
        result = process_image(str(path), settings, hdu=hdu)
        assert result.ok, result.record.error_message
        return result

    return run


def xy(sources) -> np.ndarray:
    """Positions (0-based pixels) of skysift's sources (a pyarrow table) or Source Extractor's (XWIN)."""
    if isinstance(sources, pa.Table):
        return np.c_[sources["x"].to_numpy(), sources["y"].to_numpy()]
    return np.c_[sources["XWIN_IMAGE"], sources["YWIN_IMAGE"]]


@pytest.mark.parametrize("name", IMAGES)
def test_reference_images_are_the_files_source_extractor_read(name):
    digest = hashlib.sha256(image_path(name).read_bytes()).hexdigest()
    assert digest == MANIFEST["images"][name]["sha256"], (
        f"{image_path(name)} is not the file the reference catalogs were made from: "
        "regenerate them (tests/data/sextractor/README.md)")


@pytest.mark.parametrize("name", IMAGES)
def test_source_extractor_thresholds_follow_skysifts_noise_factor(name, skysift):
    """The matched references compare like with like only while skysift measures the same factor."""
    entry = MANIFEST["images"][name]
    factor = skysift(name).record.noise_correlation_factor
    assert factor == pytest.approx(entry["noise_correlation_factor"])
    assert entry["catalogs"]["matched"]["detect_thresh"] == pytest.approx(
        MANIFEST["white_noise_threshold"] * factor, abs=1e-3)


def _filtered_significance(name: str, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The filtered significance skysift thresholds (with the image's factor), and the
    source-free sky: beyond 3 px of any pixel SEP detects at 5 of it, away from edges."""
    entry = MANIFEST["images"][name]
    image = read_image(str(image_path(name)), entry["hdu"])
    settings = Settings.load(home="unused", **SAME_FILTER)
    data = image.data
    background, mask = subtract_sky(data, image.mask, settings.background)
    kernel = detection_kernel(settings.detection).astype(np.float64)
    gain = np.sqrt((kernel**2).sum())
    significance = ndimage.convolve(data.astype(np.float64), kernel, mode="constant") / (background.rms * gain * factor)
    _, segmap = sep.extract(data, 5.0 * gain * factor, err=background.rms, mask=mask, minarea=5,
                            filter_kernel=kernel, filter_type="conv", segmentation_map=True)
    sky = ~ndimage.binary_dilation(segmap > 0, structure=np.ones((7, 7), dtype=bool))
    edge = kernel.shape[0] // 2
    sky[:edge], sky[-edge:], sky[:, :edge], sky[:, -edge:] = False, False, False, False
    if mask is not None:
        sky &= ~ndimage.binary_dilation(mask, iterations=edge)
    return significance, sky


@pytest.mark.parametrize("name", IMAGES)
def test_filtered_significance_has_unit_spread_on_source_free_sky(name, skysift):
    factor = skysift(name).record.noise_correlation_factor
    significance, sky = _filtered_significance(name, factor)
    assert sky.sum() > 10_000
    assert mad_std(significance[sky]) == pytest.approx(1.0, abs=SPREAD_TOLERANCE)
    if name in REAL_IMAGES:  # what "5 sigma" meant before: 1.2 to 2 sigma
        assert factor > 2.5


@pytest.mark.parametrize("name", IMAGES)
def test_negated_image_has_no_more_false_detections_than_source_extractor(name, skysift):
    false = skysift(f"{name}_negated").sources.num_rows  # every one false, edges included
    assert false <= len(reference(name, "matched_negated"))
    assert false <= len(reference(name, "nominal_negated"))


@pytest.mark.parametrize("name", IMAGES)
def test_no_source_is_listed_twice(name, skysift):
    sources = skysift(name).sources
    assert sources.num_rows > 5
    assert cKDTree(xy(sources)).query_pairs(DUPLICATE_RADIUS_PX) == set()
    assert cKDTree(xy(reference(name, "matched"))).query_pairs(DUPLICATE_RADIUS_PX) == set()


def _within(count: int, allowed: tuple[int, float], total: int) -> bool:
    return count <= max(allowed[0], allowed[1] * total)


@pytest.fixture
def matched(name, skysift):
    """skysift's sources, Source Extractor's (matched threshold), and the pairs within 2 px."""
    ours = skysift(name).sources.to_pandas()
    theirs = reference(name, "matched")
    distance, index = cKDTree(xy(theirs)).query(np.c_[ours["x"], ours["y"]])
    back, _ = cKDTree(np.c_[ours["x"], ours["y"]]).query(xy(theirs))
    return ours, theirs, distance, index, back


@pytest.mark.parametrize("name", IMAGES)
def test_skysift_finds_what_source_extractor_finds(name, matched):
    ours, theirs, distance, _, back = matched
    assert _within(abs(len(ours) - len(theirs)), MAX_COUNT_DIFFERENCE, len(theirs))
    assert _within(int((distance > MATCH_RADIUS_PX).sum()), MAX_UNMATCHED, len(ours))
    assert _within(int((back > MATCH_RADIUS_PX).sum()), MAX_UNMATCHED, len(theirs))


def _isolated(theirs, distance, index) -> np.ndarray:
    """Our sources matched to an unflagged Source Extractor source with no other within 10 px."""
    positions = xy(theirs)
    neighbour = cKDTree(positions).query(positions, k=2)[0][:, 1]
    return (distance < MATCH_RADIUS_PX) & (neighbour[index] > ISOLATION_PX) & (np.asarray(theirs["FLAGS"])[index] == 0)


@pytest.mark.parametrize("name", IMAGES)
def test_isolated_fluxes_and_positions_agree_with_source_extractor(name, matched):
    ours, theirs, distance, index, _ = matched
    isolated = _isolated(theirs, distance, index)
    assert isolated.sum() >= 3
    kron = ours["flux"].to_numpy()[isolated] / np.asarray(theirs["FLUX_AUTO"])[index[isolated]]
    aperture = ours["flux_aper_1"].to_numpy()[isolated] / np.asarray(theirs["FLUX_APER"])[index[isolated]]
    assert np.median(np.abs(kron - 1)) <= ISOLATED_KRON_FLUX
    assert abs(np.median(kron) - 1) <= ISOLATED_KRON_FLUX
    assert np.median(np.abs(aperture - 1)) <= ISOLATED_APERTURE_FLUX
    assert np.median(distance[isolated]) <= ISOLATED_POSITION_PX
    assert np.median(distance[distance < MATCH_RADIUS_PX]) <= MATCHED_POSITION_PX


DEBLENDED_DIFFERENTLY = pytest.mark.xfail(
    strict=True, reason="MAGPIS: Source Extractor splits the largest blend into one component more than SEP "
                        "(a deblending contrast at the 0.005 limit), so two of the 9 components hold other pixels")


@pytest.mark.parametrize("name", [pytest.param(n, marks=DEBLENDED_DIFFERENTLY) if n == "magpis" else n
                                  for n in IMAGES])
def test_blended_fluxes_agree_with_source_extractor(name, matched):
    """Every matched source, blends and crowded stars too: neighbours are corrected in the
    Kron aperture as Source Extractor's MASK_TYPE CORRECT corrects them (before: on m13
    the 90th percentile of |ratio - 1| was 6.2, MAGPIS 3.8)."""
    ours, theirs, distance, index, _ = matched
    found = distance < MATCH_RADIUS_PX
    kron = ours["flux"].to_numpy()[found] / np.asarray(theirs["FLUX_AUTO"])[index[found]]
    assert np.percentile(np.abs(kron - 1), 90) <= 0.1
    assert np.median(np.abs(kron - 1)) <= 0.01


@pytest.mark.parametrize("name", IMAGES)
def test_contaminated_apertures_are_flagged_as_source_extractor_flags_them(name, matched):
    """APER_CONTAMINATED is Source Extractor's flag 1 (neighbours over 10% of the area)."""
    ours, theirs, distance, index, _ = matched
    found = distance < MATCH_RADIUS_PX
    contaminated = (ours["flags"].to_numpy()[found] & F.APER_CONTAMINATED) != 0
    crowded = (np.asarray(theirs["FLAGS"])[index[found]] & 1) != 0
    assert (contaminated == crowded).mean() >= 0.9


def test_no_giant_blend_covers_many_peaks_unflagged(skysift):
    """On m13 every source whose isophote (2 a) holds 3 or more of Source Extractor's
    detections is flagged (merged or contaminated): no blob passes as one clean source."""
    ours = skysift("m13").sources.to_pandas()
    tree = cKDTree(xy(reference("m13", "matched")))
    covered = tree.query_ball_point(xy(skysift("m13").sources), 2 * ours["a"].to_numpy(), return_length=True)
    assert (covered >= 3).any()
    assert ((ours["flags"].to_numpy()[covered >= 3] & (F.MERGED | F.APER_CONTAMINATED)) != 0).all()
    assert ours["npix"].max() < 1000 and (ours["npix"] > 300).sum() <= 10  # 34 objects over 300 px, up to 2,371, before


def test_globular_cluster_stars_are_mostly_called_stars(skysift):
    """m13 is a globular cluster: nearly every bright source is a star. Neighbours inflated
    their half-light radii (78% of SNR > 20 sources scored extended before; Source
    Extractor's CLASS_STAR, with the seeing skysift measures, calls 46% extended)."""
    ours = skysift("m13").sources.to_pandas()
    bright = ours["snr"] > 20
    assert bright.sum() > 200
    assert (ours["star_score"][bright] < 0.5).mean() <= 0.4
