"""Images end to end: one image (read, route, measure, rows) and a local survey of many.

``router``  the one router: index-only, in memory or in tiles, from the header (local and AWS paths)
``image``   one image: header, route, measure in memory or in tiles, shape its ImageRecord and sources
``survey``  ``skysift run``: listing, resume, worker pools that survive crashes, alerts in time order
"""
