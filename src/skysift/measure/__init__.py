"""One image from pixels to a measured catalog.

``frame``  an image in memory: background, detection, photometry, sky positions, calibration
``tiled``  an image too large for memory: overlapping tiles measured apart, joined at seams
"""
