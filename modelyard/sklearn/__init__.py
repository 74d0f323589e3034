"""scikit-learn: save, log and load estimators (flavor.py), and autolog their training
(autolog.py).

    modelyard.sklearn.autolog()
    LogisticRegression().fit(X, y)       # params, training metrics and the model are logged

    info = modelyard.sklearn.log_model(model, "model", input_example=X[:5])
    modelyard.pyfunc.load_model(info.model_uri).predict(X)
"""

from modelyard.sklearn.autolog import AutologWarning, autolog
from modelyard.sklearn.flavor import (
    FLAVOR,
    SERIALIZATION_FORMAT_CLOUDPICKLE,
    SERIALIZATION_FORMAT_PICKLE,
    SERIALIZATION_FORMAT_SKOPS,
    SUPPORTED_SERIALIZATION_FORMATS,
    ModelInfo,
    _load_pyfunc,  # packages name this module as their loader (pyfunc.py calls it)
    load_model,
    log_model,
    save_model,
)

__all__ = [
    "FLAVOR",
    "SERIALIZATION_FORMAT_CLOUDPICKLE",
    "SERIALIZATION_FORMAT_PICKLE",
    "SERIALIZATION_FORMAT_SKOPS",
    "SUPPORTED_SERIALIZATION_FORMATS",
    "AutologWarning",
    "ModelInfo",
    "_load_pyfunc",
    "autolog",
    "load_model",
    "log_model",
    "save_model",
]
