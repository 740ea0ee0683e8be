"""loopline: declarative GitOps for the whole life of a tabular ML model."""

__version__ = "0.1.0"
