"""skysift against Source Extractor as a user runs them: whole processes, same files, same run.

The proof of issue 15. Every contender runs as a command of its own (a fresh process, a
fresh skysift home), runs alternate so that neither always goes first, and the figures are
medians; the ratios against Source Extractor measured in the same run are what count (the
machine is shared and its absolute seconds drift).

(a) one 4096 x 4096 float32 image, ~5,000 sources: ``skysift --home FRESH run FILE`` (default
    ``-j``) against Source Extractor doing the same measurements (7x7 Gaussian filter at the same
    significance, per-pixel RMS, windowed centroids, AUTO + 3 apertures, FLUX_RADIUS, FWHM, shape,
    CLASS_STAR, WCS, FITS catalog) and in its cheapest setup (3x3 filter, 8 columns, no weights):
    wall time and peak RSS (the largest single process, ``getrusage(RUSAGE_CHILDREN)``; and the
    whole process tree, sampled with psutil every 20 ms in the uncounted first round only: the
    sampler's CPU would slow the timed rounds, which sample every 0.5 s to guard ``--max-rss``),
    and the largest single process's peak of anonymous memory, sampled in that round (RSS less
    the file-backed pages it maps: on this machine the shared libraries' pages counted in one
    skysift process's RSS moved between 69 and 104 MiB from run to run of the same command);
(b) bulk, both cores: ``skysift --home FRESH run DIR`` (default ``-j``) over 16 x 4096^2 and
    64 x 2048^2 images (distinct fields, distinct DATE-OBS) against Source Extractor two at a
    time (``xargs -P 2``), both setups: images per second;
(c) ``skysift --version`` and ``skysift --help``;
(d) a time-domain survey: 20 visits of one field (2048^2, the same sky, seeing and sky level
    varying, distinct DATE-OBS, transients appearing along the way, 60 cosmic rays per visit)
    run as one ``skysift run DIR``: the share of the run spent in the alert phase (``alerts_seconds`` / ``seconds`` of the
    run report in ``{home}/runs``), and a digest of the alerts raised (to show they are unchanged).

Source Extractor's configuration (config, parameter lists, filters, network weights) is written
into ``benchmarks/_work/vs_sextractor/se/``; read it there. Nothing is installed: without a
``source-extractor`` (or ``sex``) on the PATH the script stops with one line and exit status 2.
Images are rendered once (``skysift.analysis.synthetic``, cached under ``benchmarks/_work/``).

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_vs_sextractor.py [--quick] [--markdown table.md] [--json out.json]

``--quick`` uses fewer images, visits and repeats. ``--only a,c`` runs some parts. Every
child process tree is killed when its resident memory passes ``--max-rss`` (default 8 GiB).
Seconds and images/s are medians; each ratio is the median of the ratios within a round
(the contenders run next to each other), steadier on a machine whose load drifts.
``--table-from out.json`` prints the table of an earlier run again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

SEX = shutil.which("source-extractor") or shutil.which("sex")
if __name__ == "__main__" and SEX is None:
    print("bench_vs_sextractor: Source Extractor not found (no source-extractor or sex on the PATH); "
          "install it (Debian: apt-get install source-extractor) and run again", file=sys.stderr)
    sys.exit(2)

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402

from common import WORK, synthetic_image  # noqa: E402
from skysift.analysis.synthetic import SkySpec, random_sources, render, write_fits  # noqa: E402
from skysift.core.detection import gaussian_kernel  # noqa: E402

HERE = WORK / "vs_sextractor"
SE_DIR = HERE / "se"
SKYSIFT = Path(sys.executable).with_name("skysift")

#: Source Extractor's columns for the measurements skysift makes (one per sources column).
SAME_PARAMS = ["NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "ERRX2WIN_IMAGE", "ERRY2WIN_IMAGE",
               "ALPHA_J2000", "DELTA_J2000", "A_IMAGE", "B_IMAGE", "THETA_IMAGE", "ELLIPTICITY", "KRON_RADIUS",
               "FLUX_RADIUS", "FWHM_IMAGE", "FLUX_MAX", "ISOAREA_IMAGE", "FLUX_AUTO", "FLUXERR_AUTO",
               "FLUX_APER(3)", "FLUXERR_APER(3)", "MAG_AUTO", "MAGERR_AUTO", "FLAGS", "CLASS_STAR"]
#: Its cheapest useful catalog: 8 columns.
CHEAP_PARAMS = ["NUMBER", "X_IMAGE", "Y_IMAGE", "ALPHA_J2000", "DELTA_J2000", "FLUX_AUTO", "FLUXERR_AUTO", "FLAGS"]
#: Cosmic-ray hits per 2048^2 visit of the time-domain survey (d).
COSMIC_RAYS = 60
#: Source Extractor's own 3x3 filter (default.conv).
CHEAP_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float) / 16.0

SE_CONFIG = """\
# Source Extractor 2.25 configuration: {title}
# written by benchmarks/bench_vs_sextractor.py
CATALOG_TYPE     FITS_1.0
PARAMETERS_NAME  {params}
DETECT_TYPE      CCD
DETECT_MINAREA   5
THRESH_TYPE      RELATIVE
DETECT_THRESH    {thresh:.4f}         # {thresh_note}
ANALYSIS_THRESH  {thresh:.4f}
FILTER           Y
FILTER_NAME      {filter}
DEBLEND_NTHRESH  32
DEBLEND_MINCONT  0.005
CLEAN            N
MASK_TYPE        CORRECT
WEIGHT_TYPE      {weight}
WEIGHT_GAIN      N
PHOT_APERTURES   6, 12, 20           # diameters: skysift's aperture radii 3, 6, 10 px
PHOT_AUTOPARAMS  2.5, 3.5
PHOT_FLUXFRAC    0.5
SATUR_LEVEL      65000.0
SATUR_KEY        SATURATE
MAG_ZEROPOINT    {zero_point}
GAIN             0.0
GAIN_KEY         GAIN
PIXEL_SCALE      0
SEEING_FWHM      {seeing}
STARNNW_NAME     {nnw}
BACK_TYPE        AUTO
BACK_SIZE        64
BACK_FILTERSIZE  3
BACKPHOTO_TYPE   GLOBAL
CHECKIMAGE_TYPE  NONE
MEMORY_OBJSTACK  3000
MEMORY_PIXSTACK  300000
MEMORY_BUFSIZE   1024
VERBOSE_TYPE     QUIET
WRITE_XML        N
NTHREADS         1
"""

RUN_ONE = """\
#!/bin/sh
# one image through Source Extractor: run_one.sh CONFIG OUT_DIR FILE (what xargs -P 2 calls)
exec {sex} "$3" -c "$1" -CATALOG_NAME "$2/$(basename "$3" .fits).cat"
"""

#: Runs a command, timing it, and reports its wall time, the largest single process's peak
#: RSS (getrusage of the children: every descendant reaped), and, sampled every ``interval``
#: seconds (which also kills a tree past ``max_rss``), the tree's peak RSS and the largest peak
#: of one process's anonymous memory (RSS less its file-backed and shared pages: Linux's
#: RssAnon, what the process holds of its own rather than the shared libraries' pages it maps).
WRAPPER = r"""
import json, os, resource, signal, subprocess, sys, threading, time
import psutil
spec = json.loads(sys.argv[1])
peak, anon_peak, over, done = [0], [0], [False], threading.Event()
def sample(pid):
    root = psutil.Process(pid)
    while not done.is_set():
        try:
            usage = [p.memory_info() for p in [root, *root.children(recursive=True)]]
        except psutil.Error:
            usage = []
        total = sum(u.rss for u in usage)
        peak[0] = max(peak[0], total)
        anon_peak[0] = max([anon_peak[0], *(u.rss - u.shared for u in usage)])
        if total > spec["max_rss"]:
            over[0] = True
            os.killpg(pid, signal.SIGKILL)
        done.wait(spec["interval"])
with open(spec["log"], "wb") as log:
    t = time.perf_counter()
    proc = subprocess.Popen(spec["cmd"], cwd=spec["cwd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    thread = threading.Thread(target=sample, args=(proc.pid,), daemon=True)
    thread.start()
    code = proc.wait()
    wall = time.perf_counter() - t
done.set()
thread.join()
print(json.dumps({"wall_s": wall, "code": code, "over_memory": over[0],
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "tree_peak_mib": peak[0] / 2**20, "anon_peak_mib": anon_peak[0] / 2**20}))
"""


# ---------------------------------------------------------------- running commands


#: Seconds between samples of the process tree's memory in a run whose peak is reported.
TREE_SAMPLE_S = 0.02
#: ... in a timed run, where the sampler only guards --max-rss. Each sample walks /proc with psutil
#: (1.35 ms of CPU): every 20 ms that is ~7% of a core taken from the run it times. In alternating
#: runs of 64 x 2048^2 images it made skysift's run 15% slower (18.9 -> 21.8 s) and Source
#: Extractor's two-at-a-time run 6% (15.5 -> 16.4 s); the 4096^2 image 10% (2.62 -> 2.89 s) and
#: Source Extractor's none (single-threaded, the other core was free).
GUARD_SAMPLE_S = 0.5


def run_measured(cmd: list[str], cwd: Path, max_rss: int, *, check: bool = True,
                 sample_every_s: float = GUARD_SAMPLE_S) -> dict:
    """Run ``cmd`` in a process of its own; wall time and memory as :data:`WRAPPER` reports them
    (the sampled peaks are only meaningful with ``sample_every_s=TREE_SAMPLE_S``)."""
    log = Path(tempfile.mkstemp(prefix="bench_", suffix=".log")[1])
    spec = {"cmd": [str(c) for c in cmd], "cwd": str(cwd), "max_rss": max_rss, "log": str(log),
            "interval": sample_every_s}
    out = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(spec)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    text = log.read_text(errors="replace")
    log.unlink()
    if result["over_memory"]:
        raise SystemExit(f"{' '.join(spec['cmd'][:4])} ...: killed, its processes passed --max-rss")
    if check and result["code"] != 0:
        raise SystemExit(f"{' '.join(spec['cmd'])} failed ({result['code']}):\n{text[-3000:]}")
    return result


def skysift_cmd(*args: str) -> list[str]:
    return [str(SKYSIFT), *args]


def fresh_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="skysift_home_"))


def run_report(home: Path) -> dict:
    reports = sorted((home / "runs").glob("run-*.json"))
    return json.loads(reports[-1].read_text()) if reports else {}


def image_timings(home: Path) -> dict[str, float]:
    """Per-image phase timings the ``images`` table records (medians over the images)."""
    import pyarrow.parquet as pq

    files = list((home / "tables" / "images").rglob("*.parquet"))
    if not files:
        return {}
    columns = ["read_s", "background_s", "detect_s", "measure_s", "catalog_s", "total_s", "noise_correlation_factor"]
    rows = [pq.read_table(f).to_pylist()[0] for f in files]
    return {c: float(np.median([r[c] for r in rows if r.get(c) is not None])) for c in columns
            if any(r.get(c) is not None for r in rows)}


def alert_digest(home: Path) -> tuple[int, str]:
    """How many alerts the home's log holds, and a digest of what they say (ids, rules, details)."""
    path = home / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    items = sorted((a["alert_id"], a["rule"], a["detail"]) for a in map(json.loads, filter(None, lines)))
    return len(items), hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def catalog_rows(folder: Path) -> int:
    return sum(len(fits.getdata(p, 1)) for p in folder.glob("*.cat"))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------- Source Extractor's setup


def _conv(path: Path, kernel: np.ndarray, note: str) -> None:
    lines = ["CONV NORM", f"# {note}"] + [" ".join(f"{v:.8f}" for v in row) for row in kernel]
    path.write_text("\n".join(lines) + "\n")


def _nnw() -> str:
    for candidate in ("/usr/share/source-extractor/default.nnw", "/usr/share/sextractor/default.nnw"):
        if Path(candidate).exists():
            return Path(candidate).read_text()
    raise SystemExit("bench_vs_sextractor: default.nnw (CLASS_STAR's network) not found beside Source Extractor")


def write_se_setup(noise_factor: float = 1.0, zero_point: float = 28.0, seeing_arcsec: float = 1.2) -> dict[str, Path]:
    """Source Extractor's two configurations in :data:`SE_DIR`; returns their config files.

    ``same``: skysift's measurements at skysift's threshold (5 sigma in the filtered image, times the
    image's ``noise_correlation_factor``, in Source Extractor's units of the pixel RMS).
    ``cheapest``: its default 3x3 filter at 5 sigma in that filtered image, 8 columns, no weight map.
    """
    SE_DIR.mkdir(parents=True, exist_ok=True)
    kernel = gaussian_kernel(3.0).astype(float)
    _conv(SE_DIR / "gauss_3.0_7x7.conv", kernel, "7x7 Gaussian, FWHM 3 px: skysift.core.detection.gaussian_kernel(3.0)")
    _conv(SE_DIR / "default_3x3.conv", CHEAP_KERNEL, "Source Extractor's default 3x3 filter")
    (SE_DIR / "default.nnw").write_text(_nnw())
    (SE_DIR / "same.param").write_text("\n".join(SAME_PARAMS) + "\n")
    (SE_DIR / "cheapest.param").write_text("\n".join(CHEAP_PARAMS) + "\n")
    same_thresh = 5.0 * float(np.sqrt((kernel**2).sum())) * noise_factor
    cheap_thresh = 5.0 * float(np.sqrt((CHEAP_KERNEL**2).sum()))
    common = {"zero_point": zero_point, "seeing": seeing_arcsec, "nnw": SE_DIR / "default.nnw"}
    (SE_DIR / "same.sex").write_text(SE_CONFIG.format(
        title="skysift's measurements (windowed centroids, AUTO + 3 apertures, FLUX_RADIUS, FWHM, shape, CLASS_STAR, WCS)",
        params=SE_DIR / "same.param", filter=SE_DIR / "gauss_3.0_7x7.conv", weight="BACKGROUND", thresh=same_thresh,
        thresh_note=f"5 sigma in the 7x7-filtered image x skysift's noise factor {noise_factor:g}", **common))
    (SE_DIR / "cheapest.sex").write_text(SE_CONFIG.format(
        title="cheapest: default 3x3 filter, 8 columns, no weight map", params=SE_DIR / "cheapest.param",
        filter=SE_DIR / "default_3x3.conv", weight="NONE", thresh=cheap_thresh,
        thresh_note="5 sigma in the 3x3-filtered image", **common))
    (SE_DIR / "run_one.sh").write_text(RUN_ONE.format(sex=SEX))
    return {"same": SE_DIR / "same.sex", "cheapest": SE_DIR / "cheapest.sex"}


def se_single(config: Path, image: Path, out: Path) -> list[str]:
    return [SEX, str(image), "-c", str(config), "-CATALOG_NAME", str(out / f"{image.stem}.cat")]


def se_two_at_a_time(config: Path, listing: Path, out: Path) -> list[str]:
    return ["xargs", "-0", "-P", "2", "-n", "1", "-a", str(listing), "sh", str(SE_DIR / "run_one.sh"), str(config), str(out)]


# ---------------------------------------------------------------- images


def distinct_fields(folder: Path, n: int, bases: list[Path]) -> Path:
    """``n`` files in ``folder`` made from ``bases``: each its own field (CRVAL1 moved 1 deg per
    file, so no two overlap) and DATE-OBS, so each is a distinct image with its own alerts."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"img_{i:03d}.fits"
        if path.exists():
            continue
        with fits.open(bases[i % len(bases)], memmap=True) as hdul:
            header, data = hdul[0].header.copy(), np.asarray(hdul[0].data)
            header["CRVAL1"] = (float(header["CRVAL1"]) + i) % 360.0
            header["DATE-OBS"] = (datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=3 * i)).strftime("%Y-%m-%dT%H:%M:%S")
            fits.PrimaryHDU(data, header).writeto(path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
    for extra in sorted(folder.glob("img_*.fits"))[n:]:  # a previous run with more files
        extra.unlink()
    return folder


def add_cosmic_rays(data: np.ndarray, n: int, rng: np.random.Generator) -> None:
    """``n`` cosmic-ray hits: tracks 1 to 6 pixels long, 300 to 5,000 counts per pixel, sharp."""
    ny, nx = data.shape
    for _ in range(n):
        x, y = rng.uniform(10, nx - 10), rng.uniform(10, ny - 10)
        angle, length = rng.uniform(0, np.pi), rng.integers(1, 7)
        steps = np.arange(length)
        xs = np.clip(np.rint(x + steps * np.cos(angle)).astype(int), 0, nx - 1)
        ys = np.clip(np.rint(y + steps * np.sin(angle)).astype(int), 0, ny - 1)
        data[ys, xs] += rng.uniform(300, 5000, length).astype(np.float32)


def survey_visits(folder: Path, n: int, size: int = 2048, seed: int = 1515) -> Path:
    """``n`` visits of one field: the same stars and galaxies, the seeing and sky varying, one
    night each, transients (a star appearing at a visit and staying) and, as in any single
    exposure, cosmic rays (:data:`COSMIC_RAYS` per visit, each a 'new source' candidate that
    forced photometry on the earlier visits must rule on)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = SkySpec(nx=size, ny=size)
    stars, galaxies = random_sources(base, int(1200 * (size / 2048) ** 2), int(300 * (size / 2048) ** 2), rng)
    n_transients = 8
    transients = {"x": rng.uniform(20, size - 21, n_transients), "y": rng.uniform(20, size - 21, n_transients),
                  "mag": rng.uniform(17.5, 20.5, n_transients), "from": rng.integers(2, 20, n_transients)}
    fwhm = rng.uniform(2.6, 3.8, 20)
    sky_counts = rng.uniform(150, 300, 20)
    for k in range(n):
        path = folder / f"visit_{k:02d}.fits"
        if path.exists():
            continue
        on = transients["from"] <= k
        visit_stars = {c: np.concatenate([stars[c], transients[c][on]]) for c in ("x", "y", "mag")}
        spec = SkySpec(nx=size, ny=size, fwhm_px=float(fwhm[k]), sky_counts=float(sky_counts[k]))
        when = datetime(2026, 4, 1, 3, 0, tzinfo=UTC) + timedelta(days=k, minutes=7 * k)
        visit_rng = np.random.default_rng(seed + 1 + k)
        sky = render(spec, visit_stars, galaxies, visit_rng,
                     {"DATE-OBS": when.strftime("%Y-%m-%dT%H:%M:%S"), "FILTER": "r", "SURVEY": "bench-visits"})
        add_cosmic_rays(sky.data, int(COSMIC_RAYS * (size / 2048) ** 2), visit_rng)
        write_fits(path.with_suffix(".tmp"), sky)
        path.with_suffix(".tmp").rename(path)
    for extra in sorted(folder.glob("visit_*.fits"))[n:]:
        extra.unlink()
    return folder


# ---------------------------------------------------------------- the four parts


def part_single(image: Path, configs: dict[str, Path], repeats: int, max_rss: int) -> dict:
    out = SE_DIR / "out_single"
    out.mkdir(exist_ok=True)
    contenders = {
        "skysift": lambda home: skysift_cmd("--home", str(home), "run", str(image)),
        "se_same": lambda home: se_single(configs["same"], image, out),
        "se_cheapest": lambda home: se_single(configs["cheapest"], image, out),
    }
    names = list(contenders)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    extra: dict[str, object] = {}
    tree_peak: dict[str, float] = {}
    anon_peak: dict[str, float] = {}
    for repeat in range(repeats + 1):  # the first round warms the page cache and byte-code: not counted
        order = names[repeat % 3:] + names[:repeat % 3]
        for name in order:
            home = fresh_home()
            # the uncounted round samples the tree's memory finely; the timed rounds only guard it
            result = run_measured(contenders[name](home), HERE, max_rss,
                                  sample_every_s=GUARD_SAMPLE_S if repeat else TREE_SAMPLE_S)
            if not repeat:
                tree_peak[name], anon_peak[name] = result["tree_peak_mib"], result["anon_peak_mib"]
            if name == "skysift":
                if repeat == 0:
                    extra["skysift_sources"] = run_report(home).get("sources")
                    extra["skysift_phases"] = image_timings(home)
                result["report_seconds"] = run_report(home).get("seconds")
            elif repeat == 0:
                extra[f"{name}_sources"] = len(fits.getdata(out / f"{image.stem}.cat", 1))
            shutil.rmtree(home, ignore_errors=True)
            if repeat:
                runs[name].append(result)
            print(f"  (a) {name:12s} {result['wall_s']:.3f} s  {result['maxrss_mib']:.0f} MiB", file=sys.stderr)
    summary = {name: {"wall_s": median([r["wall_s"] for r in rs]), "wall_s_runs": [r["wall_s"] for r in rs],
                      "maxrss_mib": median([r["maxrss_mib"] for r in rs]),
                      "tree_peak_mib": tree_peak[name], "anon_peak_mib": anon_peak[name]} for name, rs in runs.items()}
    summary["skysift"]["report_seconds"] = median([r["report_seconds"] for r in runs["skysift"]])
    summary.update(extra)
    return summary


def part_bulk(label: str, folder: Path, configs: dict[str, Path], repeats: int, max_rss: int) -> dict:
    files = sorted(folder.glob("*.fits"))
    listing = SE_DIR / f"{label}.list"
    listing.write_bytes(b"".join(str(f).encode() + b"\0" for f in files))
    out = SE_DIR / f"out_{label}"
    contenders = {
        "skysift": lambda home: skysift_cmd("--home", str(home), "run", str(folder)),
        "se_same": lambda home: se_two_at_a_time(configs["same"], listing, out),
        "se_cheapest": lambda home: se_two_at_a_time(configs["cheapest"], listing, out),
    }
    names = list(contenders)
    runs: dict[str, list[float]] = {name: [] for name in names}
    rss: dict[str, list[float]] = {name: [] for name in names}
    extra: dict[str, object] = {}
    for repeat in range(repeats):
        order = names[repeat % 3:] + names[:repeat % 3]
        for name in order:
            home = fresh_home()
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            result = run_measured(contenders[name](home), HERE, max_rss)
            runs[name].append(result["wall_s"])
            rss[name].append(result["maxrss_mib"])
            if repeat == 0:
                if name == "skysift":
                    report = run_report(home)
                    extra["skysift_sources"] = report.get("sources")
                    extra["skysift_alerts_seconds"] = report.get("alerts_seconds")
                    extra["skysift_report_seconds"] = report.get("seconds")
                else:
                    extra[f"{name}_sources"] = catalog_rows(out)
            shutil.rmtree(home, ignore_errors=True)
            print(f"  (b) {label} {name:12s} {result['wall_s']:.2f} s = {len(files) / result['wall_s']:.2f} img/s",
                  file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    summary = {name: {"wall_s": median(ts), "wall_s_runs": ts, "images_per_s": len(files) / median(ts),
                      "maxrss_mib": median(rss[name])} for name, ts in runs.items()}
    summary["images"] = len(files)
    summary.update(extra)
    return summary


def part_startup(repeats: int, max_rss: int) -> dict:
    runs: dict[str, list[float]] = {"version": [], "help": []}
    for repeat in range(repeats + 1):
        for name in (("version", "help") if repeat % 2 == 0 else ("help", "version")):
            result = run_measured(skysift_cmd(f"--{name}"), HERE, max_rss)
            if repeat:
                runs[name].append(result["wall_s"])
    return {name: {"wall_s": median(ts), "wall_s_runs": ts} for name, ts in runs.items()}


def part_survey(folder: Path, repeats: int, max_rss: int) -> dict:
    shares, walls, alerts_s, report_s, digests = [], [], [], [], set()
    n_alerts = None
    for _ in range(repeats):
        home = fresh_home()
        result = run_measured(skysift_cmd("--home", str(home), "run", str(folder)), HERE, max_rss)
        report = run_report(home)
        n_alerts, digest = alert_digest(home)
        digests.add(digest)
        shares.append(report["alerts_seconds"] / report["seconds"])
        walls.append(result["wall_s"])
        alerts_s.append(report["alerts_seconds"])
        report_s.append(report["seconds"])
        print(f"  (d) survey: {result['wall_s']:.1f} s, alert phase {report['alerts_seconds']:.1f} s of "
              f"{report['seconds']:.1f} s, {n_alerts} alerts ({digest})", file=sys.stderr)
        shutil.rmtree(home, ignore_errors=True)
    return {"visits": len(list(folder.glob("*.fits"))), "alert_share": median(shares), "alert_share_runs": shares,
            "alerts_seconds": median(alerts_s), "report_seconds": median(report_s), "wall_s": median(walls),
            "alerts": n_alerts, "alerts_digest": sorted(digests)}


# ---------------------------------------------------------------- the table


def paired(numerators: list[float], denominators: list[float]) -> float:
    """Median of the ratios of runs made in the same round (next to each other in time): on a
    shared machine whose load drifts, steadier than the ratio of the two medians."""
    return median([a / b for a, b in zip(numerators, denominators, strict=True)])


def table_rows(results: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(work, Source Extractor same, SE cheapest, skysift, ratio, target) rows. Seconds and
    images/s are medians; ratios are medians of the rounds' ratios (:func:`paired`)."""
    rows = []
    if "single" in results:
        s = results["single"]
        sk, same, cheap = s["skysift"], s["se_same"], s["se_cheapest"]
        ratio = paired(sk["wall_s_runs"], same["wall_s_runs"])
        rows.append(("one 4096^2 image, wall (`skysift run FILE`, fresh home)", f"{same['wall_s']:.2f} s",
                     f"{cheap['wall_s']:.2f} s", f"{sk['wall_s']:.2f} s",
                     f"{ratio:.2f}x same, {paired(sk['wall_s_runs'], cheap['wall_s_runs']):.2f}x cheapest",
                     f"<= 1.5x same: {'met' if ratio <= 1.5 else 'not met'}"))
        rows.append(("one 4096^2 image, peak RSS of the largest process (tree)",
                     f"{same['maxrss_mib']:.0f} MiB", f"{cheap['maxrss_mib']:.0f} MiB",
                     f"{sk['maxrss_mib']:.0f} MiB ({sk['tree_peak_mib']:.0f})",
                     f"{sk['maxrss_mib'] / same['maxrss_mib']:.1f}x same",
                     f"<= 300 MiB per worker: {'met' if sk['maxrss_mib'] <= 300 else 'not met'}"))
        if "anon_peak_mib" in sk:  # runs saved before the harness sampled it have none
            rows.append(("one 4096^2 image, peak anonymous memory of the largest process (RSS less shared-library "
                         f"pages; sampled every {TREE_SAMPLE_S * 1000:.0f} ms, first round)",
                         f"{same['anon_peak_mib']:.0f} MiB", f"{cheap['anon_peak_mib']:.0f} MiB",
                         f"{sk['anon_peak_mib']:.0f} MiB", f"{sk['anon_peak_mib'] / same['anon_peak_mib']:.1f}x same",
                         f"<= 300 MiB per worker: {'met' if sk['anon_peak_mib'] <= 300 else 'not met'}"))
    for label, title in (("bulk_4k", "4096^2"), ("bulk_2k", "2048^2")):
        if label not in results:
            continue
        b = results[label]
        sk, same, cheap = b["skysift"], b["se_same"], b["se_cheapest"]
        ratio = paired(same["wall_s_runs"], sk["wall_s_runs"])  # throughput: the inverse of the walls' ratio
        rows.append((f"{b['images']} x {title}, both cores (SE two at a time), images/s", f"{same['images_per_s']:.2f}",
                     f"{cheap['images_per_s']:.2f}", f"{sk['images_per_s']:.2f}",
                     f"{ratio:.2f}x same, {paired(cheap['wall_s_runs'], sk['wall_s_runs']):.2f}x cheapest",
                     f">= 1x same: {'met' if ratio >= 1.0 else 'not met'}"))
    if "startup" in results:
        for name in ("version", "help"):
            wall = results["startup"][name]["wall_s"]
            rows.append((f"`skysift --{name}`", "", "", f"{wall:.2f} s", "",
                         f"<= 0.3 s: {'met' if wall <= 0.3 else 'not met'}"))
    if "survey" in results:
        v = results["survey"]
        rows.append((f"{v['visits']} visits of one field: alert phase / run", "", "",
                     f"{v['alert_share']:.1%} ({v['alerts_seconds']:.1f} of {v['report_seconds']:.1f} s)",
                     f"{v['alerts']} alerts, digest {', '.join(v['alerts_digest'])}",
                     f"<= 15%: {'met' if v['alert_share'] <= 0.15 else 'not met'}"))
    return rows


def markdown(rows) -> str:
    lines = ["| work | Source Extractor, same measurements | Source Extractor, cheapest | skysift | skysift vs SE | target |",
             "|---|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def compile_skysift() -> None:
    """skysift's modules compiled to bytecode once, before any timing, as ``pip install`` does and as
    Python does on a package's first import. Where ``PYTHONDONTWRITEBYTECODE`` is set (this machine
    sets it for every process), an editable checkout would otherwise compile again, in every timed
    run, each module changed since its bytecode was last written (~0.04 s of a run with ten such)."""
    import skysift

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(skysift.__file__).parent)], check=True,
                   stdout=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, visits and repeats")
    parser.add_argument("--only", default="a,b,c,d", help="parts to run, e.g. a,c")
    parser.add_argument("--repeats", type=int, help="rounds of (a) (default 7; quick 3); (c) runs 2x+1 as many")
    parser.add_argument("--bulk-repeats", type=int, help="rounds of (b) (default 3; quick 1)")
    parser.add_argument("--survey-repeats", type=int, help="runs of (d) (default 3; quick 1)")
    parser.add_argument("--max-rss", default=8 * 2**30, type=int, help="kill a run whose process tree passes this (bytes)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--table-from", type=Path, help="only print (and --markdown) the table of a --json file")
    args = parser.parse_args()
    if args.table_from:
        table = markdown(table_rows(json.loads(args.table_from.read_text())))
        print(table)
        if args.markdown:
            args.markdown.write_text(table)
        return {}
    parts = set(args.only.split(","))
    repeats = args.repeats or (3 if args.quick else 7)
    bulk_repeats = args.bulk_repeats or (1 if args.quick else 3)
    survey_repeats = args.survey_repeats or (1 if args.quick else 3)
    n4k, n2k, visits = (4, 16, 8) if args.quick else (16, 64, 20)
    if not SKYSIFT.exists():
        raise SystemExit(f"bench_vs_sextractor: no skysift command beside {sys.executable}")
    HERE.mkdir(parents=True, exist_ok=True)

    compile_skysift()
    image, _ = synthetic_image("bench_4k", 4096, n_stars=4000, n_galaxies=1000)
    with fits.open(image) as hdul:
        header = hdul[0].header
        zero_point, seeing = float(header.get("MAGZERO", 28.0)), float(header.get("SEEING", 1.2))
    # skysift's noise factor of the image, so that Source Extractor detects at the same significance
    home = fresh_home()
    run_measured(skysift_cmd("--home", str(home), "run", str(image)), HERE, args.max_rss)
    noise_factor = image_timings(home).get("noise_correlation_factor", 1.0)
    shutil.rmtree(home, ignore_errors=True)
    configs = write_se_setup(noise_factor, zero_point, seeing)
    results: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "quick": args.quick,
        "source_extractor": subprocess.run([SEX, "-v"], capture_output=True, text=True).stdout.strip(),
        "skysift": subprocess.run(skysift_cmd("--version"), capture_output=True, text=True).stdout.strip(),
        "noise_correlation_factor": noise_factor, "se_config_dir": str(SE_DIR),
    }
    if "a" in parts:
        results["single"] = part_single(image, configs, repeats, args.max_rss)
    if "b" in parts:
        bases4 = [image] + [synthetic_image(f"bulk4k_base_{i}", 4096, 4000, 1000, seed=200 + i)[0] for i in range(1, 4)]
        bases2 = [synthetic_image(f"bulk_base_{i}", 2048, 1200, 300, seed=100 + i)[0] for i in range(10)]
        results["bulk_4k"] = part_bulk("bulk_4k", distinct_fields(HERE / f"bulk_4k_{n4k}", n4k, bases4), configs,
                                       bulk_repeats, args.max_rss)
        results["bulk_2k"] = part_bulk("bulk_2k", distinct_fields(HERE / f"bulk_2k_{n2k}", n2k, bases2), configs,
                                       bulk_repeats, args.max_rss)
    if "c" in parts:
        results["startup"] = part_startup(2 * repeats + 1, args.max_rss)
    if "d" in parts:
        results["survey"] = part_survey(survey_visits(HERE / f"survey_{visits}", visits), survey_repeats, args.max_rss)
    table = markdown(table_rows(results))
    print(table)
    print(json.dumps(results, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
