"""Unit tests, one folder per package of src/loopline and one file per module."""
