"""Alerts: which sources of a new image are new, their cut-outs, and their delivery.

``rules``     the high-SNR, high-flux and new-source rules against earlier images
``forced``    forced photometry at a position in earlier images (really new, or just fainter?)
``cutouts``   FITS cut-outs around alerted sources, read as sections
``delivery``  prepare (rules + cut-outs, in parallel) then deliver (rows + publish, in time order)
``log``       the local publisher: an append-only JSON-lines log, once per alert_id
"""
