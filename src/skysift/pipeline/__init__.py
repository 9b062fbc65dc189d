"""Images end to end: one image (read, route, measure, rows) and a local survey of many.

``image``   one image: inspect, measure in memory or in tiles, shape its table rows
``survey``  ``skysift run``: listing, resume, worker pools that survive crashes, alerts in time order
"""
