"""Processes working for one run: the only place with pools.

``strips``  one in-memory frame detected by several forked processes (the catalog one process makes)
``pools``   process pools that survive a worker killed by the kernel (the call fails alone)
"""
