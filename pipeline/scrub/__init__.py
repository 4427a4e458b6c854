"""Causal scrubbing of the induction heads' inputs: the engine, a library with no file I/O
(engine.py); the resamplers (resample.py); % loss recovered and its intervals (stats.py); the
sweep over masks (sweep.py). Beside them, the layer-0 cache on disk (cache.py) and what a scrub
reads from the pipeline's files (inputs.py)."""
