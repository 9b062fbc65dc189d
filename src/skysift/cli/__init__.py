"""The ``skysift`` command: parse input, call the library, shape output.

``main``          local commands (run, query, alerts, plot, export, objects, check, ...)
``analysis``      crossmatch, completeness
``aws``           emulate, ingest, alerts subscribe
``timelag``       the solar time-lag command
``terminal``      what every command shares: one-line errors, exit codes, output files
``query_output``  query results as text, CSV, JSON or Parquet
"""
