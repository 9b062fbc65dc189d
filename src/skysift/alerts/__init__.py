"""Alerts: which sources of a new image are new, their cut-outs, and their delivery.

``rules``   the new-source rule against earlier images, cut-outs, delivery, the local alert log
``forced``  forced photometry at earlier positions (is it really new, or just fainter?)
"""
