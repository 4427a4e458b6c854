"""Measurements of a model and its data: the whitelist heuristics, head scores and roles, the
head views, the per-token breakdown of a scrub."""
