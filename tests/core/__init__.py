"""Unit tests of :mod:`skysift.core`, one module each, on tiny arrays whose answers are known.

A package (this file) so that ``core/test_background.py`` and ``core/test_photometry.py`` can
share their basenames with the end-to-end regression tests in ``tests/`` (pytest imports both).
"""
