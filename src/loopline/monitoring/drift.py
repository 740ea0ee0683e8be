"""Per-column drift of live data against the training reference (the monitor's view).

The tests live in :mod:`loopline.model.drift`, shared with the gate; the monitor uses
Evidently's default choice of test per column (:func:`default_method`), so its verdicts are
those of Evidently's DataDriftPreset.
"""

from loopline.model.drift import (  # noqa: F401 (the monitor's names for them)
    DEFAULT_THRESHOLDS,
    P_VALUE_METHODS,
    ColumnDrift,
    column_drift,
    dataset_drift,
    default_method,
    jensenshannon,
    psi,
    wasserstein_normed,
)
