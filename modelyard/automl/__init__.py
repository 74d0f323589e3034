"""Glass-box AutoML: a tracked baseline model in minutes, every trial left as source code.

    import modelyard.automl
    result = modelyard.automl.classify(df, target_col="label", timeout_minutes=5)
    result = modelyard.automl.regress(df, target_col="price", primary_metric="mae")
    result = modelyard.automl.forecast(df, target_col="sales", time_col="day", horizon=14,
                                       frequency="D")

See `modelyard.automl.api` for what is logged where.
"""

from modelyard.automl.api import classify, forecast, regress
from modelyard.automl.result import AutoMLResult, BestTrial, SkippedSeries
from modelyard.automl.search import TrialEvent

__all__ = [
    "AutoMLResult",
    "BestTrial",
    "SkippedSeries",
    "TrialEvent",
    "classify",
    "forecast",
    "regress",
]
