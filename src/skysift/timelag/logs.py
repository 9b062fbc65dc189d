"""Logging of the time-lag runs: distributed's INFO lines only when asked for.

A ``LocalCluster`` logs about 30 INFO lines as it starts and stops (scheduler, nannies,
workers, connections); they bury the one line a run needs. Entry points call
:func:`quiet_dask_logging` with their verbosity; a notebook calls it with 0.
"""

from __future__ import annotations

import logging

__all__ = ["DASK_LOGGERS", "SHUTDOWN_LOGGERS", "quiet_dask_logging"]

#: Loggers of the dask machinery quieted by default.
DASK_LOGGERS = ("distributed", "dask_gateway")
#: Shutdown chatter, quieted to errors by default: a nanny that has to kill its worker after the
#: close timeout (a loaded machine) is stopping a cluster that is going away anyway.
SHUTDOWN_LOGGERS = ("distributed.nanny",)


def quiet_dask_logging(verbose: int = 0) -> None:
    """Set the dask loggers to WARNING (``verbose`` 0), INFO (1) or DEBUG (2 and more)."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    for name in DASK_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in SHUTDOWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR if verbose <= 0 else level)
