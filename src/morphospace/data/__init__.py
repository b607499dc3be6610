"""Surveys in, cube + catalogue out.

``ingest``  reads a survey on disk (several layouts) into a run: the preprocessed image cube
            ``RUN/cube.npy`` and ``RUN/catalogue.parquet`` with the quality flags;
``synth``   the built-in synthetic survey (GalSim), with its true nuisance columns.
"""
