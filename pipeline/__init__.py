"""Causal scrubbing of induction heads: a reproducible pipeline."""
