"""Where pixels come from: storage (local or fsspec/S3), the one header check, FITS reading.

``storage``     local paths and ``s3://`` URLs, listing, hashing, byte reads
``fitsheader``  the structure of a FITS file validated before any allocation (bounded, gzip-aware)
``fits``        strict image reading: whole image, sections for large ones, inspection only
"""
