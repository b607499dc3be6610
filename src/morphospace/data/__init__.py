"""Surveys in, cube + catalogue out: ``ingest`` and the synthetic survey ``synth``."""
