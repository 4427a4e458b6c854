"""The test suite: a package, so that its shared code imports as tests.helpers (see tests/helpers/)."""
