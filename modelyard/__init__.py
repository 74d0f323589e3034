"""Modelyard: a self-hosted ML lifecycle platform. This package is its Python SDK and CLI.

import modelyard
modelyard.set_tracking_uri("127.0.0.1:50051")   # or MODELYARD_URI; `modelyard up` serves here
with modelyard.start_run():
    modelyard.log_metric("rmse", 0.7)
"""

from modelyard._grpc_engine import use_polling_engine

use_polling_engine()  # before anything imports grpc

from modelyard import data, errors
from modelyard.client import Client
from modelyard.entities import ViewType
from modelyard.fluent import (
    ActiveRun,
    active_run,
    autolog,
    client,
    create_experiment,
    delete_experiment,
    delete_experiment_tag,
    delete_run,
    delete_tag,
    enable_async_logging,
    end_run,
    flush_async_logging,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_parent_run,
    get_run,
    get_tracking_uri,
    last_active_run,
    load_table,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_input,
    log_inputs,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_table,
    log_text,
    register_model,
    restore_experiment,
    search_experiments,
    search_runs,
    set_experiment,
    set_experiment_tag,
    set_experiment_tags,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)

__version__ = "0.1.0"

__all__ = [
    "ActiveRun",
    "Client",
    "ViewType",
    "active_run",
    "autolog",
    "client",
    "create_experiment",
    "data",
    "delete_experiment",
    "delete_experiment_tag",
    "delete_run",
    "delete_tag",
    "enable_async_logging",
    "end_run",
    "errors",
    "flush_async_logging",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_parent_run",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "load_table",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_input",
    "log_inputs",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "register_model",
    "restore_experiment",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]
