"""The tables: schemas, local Parquet storage, SQL, objects, exports and their health.

``schema``           the columns (with units) of sources, images, alerts
``records``          an images row as a typed ImageRecord; ImageStatus, Route, WcsKind, WcsStatus
``ports``            the two seams to the outside world: CatalogStore, AlertPublisher
``tables``           local Hive-partitioned Parquet, one file per image, replaced by image_id; the one
                     reader of the images rows (LocalTables.images)
``history``          earlier observations of a patch of sky (for the new-source rule)
``compaction``       merge small per-image files of a partition
``query``            SQL over the tables with DuckDB
``objects``          detections associated across images into objects
``analysis_tables``  the matches and injections tables
``export``           FITS tables, VOTables, DS9 regions
``integrity``        damaged files found, moved aside, temporaries cleaned
``homelock``         one writer at a time per local home
"""
