"""Reductions, clusterings, comparisons, probes and the nuisance audit."""
