"""`python -m pipeline.config`: compose conf/ into params.yaml (pipeline.config.compose)."""
import sys

from pipeline.config.compose import main

sys.exit(main())
