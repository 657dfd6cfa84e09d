"""The batch: any number of borrower histories (or table rows) scored in buckets of whole borrowers.

- ``stream``: the input read as a stream of Arrow batches, cut into buckets, the plan of a job;
- ``bucket``: one bucket's step (prepare its rows, score them, write its part), shared by every engine;
- ``job``: one job from input to output: validation, the lock, conservation, the summary;
- ``threads``: the engine of one process (scoring threads and a writer);
- ``pool``: the engine of worker processes;
- ``results``: a job's parts and its assembled output;
- ``pieces``: pieces of parquet files that hold whole borrowers (what a worker or a Dask task takes);
- ``table_job``: a table (one row per account) scored by a tabular model.

A group of borrowers scored together is a **bucket**; a bucket's result on disk is a **part**;
the buckets a worker process or a Dask task takes at once are a **piece**.
"""
