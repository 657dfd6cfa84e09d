"""Past one machine: the same stages on a Dask cluster.

- ``client``: where the work runs (``cluster=none|local|address``) and the connection to it;
- ``generate``: simulated chunks written as parts by the workers;
- ``train``: snapshots built on the workers, one partition per panel part;
- ``predict``: pieces of whole borrowers scored on the workers.
"""
