"""loopline: declarative GitOps for the whole life of a tabular ML model."""

import os as _os

# OpenMP threads (HistGradientBoosting, KNN) busy-wait by default; on a shared 2-core
# runner that spin collapses throughput (a 7 s evaluate stage took 90 s next to one other
# busy process). Sleeping waits cost nothing measurable when the machine is idle. Must be
# set before libgomp loads, i.e. before scikit-learn is imported; an explicit value wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
