"""Monitoring a scored portfolio against its model: the reference profile, drift (PSI), the back-test
and the report. Stage code: frames in, dicts, frames and strings out; ``riskml.monitor`` reads and writes."""
