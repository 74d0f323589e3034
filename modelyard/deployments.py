"""Call serving endpoints from Python, in the style of mlflow.deployments.

modelyard.deployments.predict("fraud", df)   # -> {"predictions": array([...])}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelyard.fluent import client


def predict(
    endpoint: str,
    data: pd.DataFrame | np.ndarray | dict[str, Any] | list[Any],
    request_id: str | None = None,
    served_model: str | None = None,
) -> dict[str, np.ndarray]:
    """Predict with an endpoint through the Open Inference Protocol (Client.predict says what
    `data` may be)."""
    return client().predict(endpoint, data, request_id=request_id, served_model=served_model)
