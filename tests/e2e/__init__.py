"""End-to-end tests: the real pipeline, DVC, servers, remotes and builds (all marked slow)."""
