"""What astronomers do with a catalog: cross-match, completeness, plots, synthetic skies.

``crossmatch``    match sources to a reference catalog: astrometric offsets and zero points
``completeness``  artificial stars injected and re-detected: 50%/90% limiting magnitudes
``plotting``      overview, overlays and diagnostics (matplotlib)
``synthetic``     synthetic skies with known truth (tests, benchmarks, samples)
``sample``        ``skysift sample``: a small synthetic survey
"""
