"""Property tests: mutated headers and bytes of a good file never end in an untyped failure.

Hypothesis rewrites a small good FITS file (keyword values, deleted, duplicated and swapped
cards, random BITPIX and NAXISn; flipped, inserted, deleted bytes; truncation; gzip) and a
memory-capped child process (:class:`hostile.probe.Probe`) runs ``inspect_image`` (the Inspect
step of the AWS path, ``skysift inspect``) and ``process_image`` (``skysift run``, the Detect
steps) on each mutant. Whatever the bytes:

* ``inspect_image`` returns, or raises a typed :class:`~skysift.errors.SkysiftError` with a
  known cause (not ``internal_error``);
* ``process_image`` never raises, and a failed image has a known cause;
* when Inspect rejects a file, ``process_image`` rejects it for the same reason, so the AWS
  path and local mode record the same verdict.

Examples are derandomized (the same ones every run) and the child never grows past 4 GiB.
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hostile.corpus import BLOCK, CARD, base_sky, card, header_length, padded
from hostile.probe import Probe

KEYS = ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "BSCALE", "BZERO", "BLANK",
        "CRVAL1", "CRVAL2", "CRPIX1", "CDELT1", "PC1_1", "CTYPE1", "CTYPE2", "CUNIT1", "A_ORDER", "DATE-OBS",
        "EXPTIME", "GAIN", "MAGZERO", "CHECKSUM", "DATASUM", "XTENSION", "PCOUNT", "GCOUNT", "END"]
INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 8, 16, 32, 64, -32, -64, 255, 256, 999, 1000, 2**31 - 1, 2**31, 2**32,
                    99999999999, -(2**63), 2**63]

values = st.one_of(
    st.sampled_from([str(v) for v in INTERESTING_INTS]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).upper()),
    st.sampled_from(["T", "F", "''", "'   '", "'abc'", "'RA---TAN'", "'HPLN-TAN'", "'deg'", "'2026-13-45'",
                     "'" + "x" * 68 + "'", "", "=", "'unterminated"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=70),
)
header_ops = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), values),
    st.tuples(st.just("delete"), st.integers(0, 200)),
    st.tuples(st.just("duplicate"), st.integers(0, 200), st.integers(0, 200)),
    st.tuples(st.just("swap"), st.integers(0, 200), st.integers(0, 200)),
)
byte_ops = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**31)),
    st.tuples(st.just("insert"), st.integers(0, 2**31), st.binary(min_size=1, max_size=3000)),
    st.tuples(st.just("delete"), st.integers(0, 2**31), st.integers(1, 6000)),
)


def mutate_header(blob: bytes, ops: list[tuple]) -> bytes:
    """``blob`` with its primary header's cards edited; the data follows the new header."""
    length = header_length(blob)
    cards = [blob[i : i + CARD] for i in range(0, length, CARD)]
    end = next(i for i, c in enumerate(cards) if c.startswith(b"END     "))
    cards = cards[:end]
    for op in ops:
        if op[0] == "set":
            _, key, value = op
            new = card(key, value)[:CARD].ljust(CARD)
            index = next((i for i, c in enumerate(cards) if c[:8] == f"{key:<8}".encode()), None)
            if index is None:
                cards.append(new)
            else:
                cards[index] = new
        elif cards and op[0] == "delete":
            del cards[op[1] % len(cards)]
        elif cards and op[0] == "duplicate":
            cards.insert(op[2] % (len(cards) + 1), cards[op[1] % len(cards)])
        elif cards and op[0] == "swap":
            i, j = op[1] % len(cards), op[2] % len(cards)
            cards[i], cards[j] = cards[j], cards[i]
    header = padded(b"".join(cards) + b"END".ljust(CARD), b" ")
    return header + blob[length:]


def mutate_bytes(blob: bytes, ops: list[tuple]) -> bytes:
    data = bytearray(blob)
    for op in ops:
        if not data:
            break
        where = op[1] % len(data)
        if op[0] == "flip":
            data[where] ^= 1 << op[2]
        elif op[0] == "truncate":
            del data[where:]
        elif op[0] == "insert":
            data[where:where] = op[2]
        elif op[0] == "delete":
            del data[where : where + op[2]]
    return bytes(data)


@pytest.fixture(scope="module")
def good_file() -> bytes:
    """A 64 x 64 sky with a TAN-SIP WCS and 30 stars (measured in a few milliseconds)."""
    return base_sky(size=64, n_stars=30, seed=3).plain


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    work = tmp_path_factory.mktemp("probe")
    child = Probe(work / "home", work / "probe.log")
    yield child
    child.close()


@pytest.fixture(scope="module")
def mutants(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutants")


_names = itertools.count()


def _untyped(answer: dict) -> bool:
    return "died" in answer or answer.get("typed") is False or answer.get("reason") == "internal_error"


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(header=st.lists(header_ops, max_size=4), damage=st.lists(byte_ops, max_size=3), compress=st.booleans(),
       cut_gzip=st.one_of(st.none(), st.integers(0, 2**31)))
# Found by wider (random) runs of this test, kept so every run tries them:
@example(header=[("set", "NAXIS", "else")], damage=[], compress=True, cut_gzip=None)  # unparsable NAXIS
@example(header=[("set", "CTYPE2", "r[MM")], damage=[], compress=False, cut_gzip=None)  # unparsable CTYPE2
@example(header=[], damage=[("delete", 6355, 1)], compress=False, cut_gzip=None)  # pixels shifted by a byte
def test_mutated_files_fail_only_with_typed_reasons_and_the_same_one_on_both_paths(
        good_file, probe, mutants, header, damage, compress, cut_gzip):
    blob = mutate_bytes(mutate_header(good_file, header), damage)
    if compress:
        blob = gzip.compress(blob, mtime=0)
        if cut_gzip is not None:
            blob = blob[: cut_gzip % (len(blob) + 1)]
    path = mutants / f"mutant-{next(_names):04d}.fits"
    path.write_bytes(blob)

    answer = probe.ask(path)

    inspect, process = answer["inspect"], answer["process"]
    assert not _untyped(inspect), f"inspect_image: {inspect}"
    assert "raised" not in process and "died" not in process, f"process_image raised: {process}"
    assert process["status"] in ("ok", "indexed", "failed")
    assert process["reason"] != "internal_error", f"process_image: {process}"
    if "raised" in inspect:  # what the Inspect step quarantines, local mode must fail the same way
        assert (process["status"], process["reason"]) == ("failed", inspect["reason"]), (inspect, process)


def test_header_mutations_keep_the_file_structure():
    blob = base_sky(size=32, n_stars=5, seed=1).plain
    grown = mutate_header(blob, [("set", "NAXIS1", "99999999999")] + [("duplicate", 5, 6)] * 40)

    assert len(grown) % BLOCK == 0 and grown[:8] == b"SIMPLE  "
    assert b"NAXIS1  =          99999999999" in grown[: header_length(grown)]
    assert grown[header_length(grown):] == blob[header_length(blob):]

