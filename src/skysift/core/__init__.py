"""The science core: arrays and header values in, arrays and numbers out.

No file, table or service is touched here (checked by import-linter in ``make test``).

``background``      sky level and noise maps (SEP mesh)
``detection``       matched-filter detection, crowding guard, noise-correlation factor
``deblending``      blends split the same way whatever else is on the frame
``photometry``      windowed centroids, Kron/aperture fluxes with neighbours masked, sizes, flags
``psf``             seeing FWHM from a Moffat fit to clean stars
``classification``  star/galaxy score from size against the stellar locus
``astrometry``      pixel to sky, WCS validation, footprints, HEALPix
``calibration``     zero points by survey convention, counts to AB magnitudes and microjanskys
``metadata``        what a header says: survey, band, wavelength, time, exposure
``flags``           the source flag bits
"""
