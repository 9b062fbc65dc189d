"""The project's own corpus of malformed and awkward-but-valid FITS files, and the runners that
put it through every path (``skysift run`` and the emulated AWS system) under a memory cap.

* :mod:`hostile.corpus` builds the files and says what each one must give.
* :mod:`hostile.runners` runs a directory of them locally or on the emulation (:mod:`hostile.emulated`), in a child
  process capped with ``RLIMIT_AS``, and returns one outcome per file.
* :mod:`hostile.probe` is the capped worker the property tests send mutated files to.
* :mod:`hostile.report` prints the table of docs/RELIABILITY.md from a real run.
"""
