"""Prefect 3 flows over the etlnorm library: thin shells, one task per library phase.

``normalize.py``   normalize-table (one column; default or Dask task runner)
``warehouse.py``   normalize-warehouse (every configured target, as subflows)
``ontologies.py``  refresh-ontologies (new releases, retrieval indexes)

Deployments: ``prefect.yaml`` at the repository root.
"""
