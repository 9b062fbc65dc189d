"""Processes working on one image: forked strips of a frame (the catalog one process makes)."""
