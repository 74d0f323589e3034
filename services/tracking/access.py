"""Who may call each TrackingService RPC. Runs are guarded through their experiment."""

from __future__ import annotations

from modelyard.entities.common import PermissionLevel as L
from modelyard.services.common.auth.policy import Rule, create, filtered, grant_change, on

RULES: dict[str, Rule] = {
    "CreateExperiment": create(),
    "GetExperiment": on(L.READ, "experiment", "experiment_id"),
    "GetExperimentByName": on(L.READ, "experiment_name", "experiment_name"),
    "SearchExperiments": filtered(),
    "UpdateExperiment": on(L.EDIT, "experiment", "experiment_id", mutating=True),
    "DeleteExperiment": on(L.MANAGE, "experiment", "experiment_id", mutating=True),
    "RestoreExperiment": on(L.MANAGE, "experiment", "experiment_id", mutating=True),
    "SetExperimentTag": on(L.EDIT, "experiment", "experiment_id", mutating=True),
    "DeleteExperimentTag": on(L.EDIT, "experiment", "experiment_id", mutating=True),
    "SetExperimentPermission": grant_change("experiment", "experiment_id"),
    "DeleteExperimentPermission": grant_change("experiment", "experiment_id"),
    "ListExperimentPermissions": on(L.READ, "experiment", "experiment_id"),
    "CreateRun": on(L.EDIT, "experiment", lambda r: r.experiment_id or "0", mutating=True),
    "GetRun": on(L.READ, "run", "run_id"),
    "UpdateRun": on(L.EDIT, "run", "run_id", mutating=True),
    "DeleteRun": on(L.MANAGE, "run", "run_id", mutating=True),
    "RestoreRun": on(L.MANAGE, "run", "run_id", mutating=True),
    # The service refuses experiments the caller cannot read.
    "SearchRuns": filtered(),
    "LogParam": on(L.EDIT, "run", "run_id", mutating=True),
    "LogMetric": on(L.EDIT, "run", "run_id", mutating=True),
    "SetTag": on(L.EDIT, "run", "run_id", mutating=True),
    "DeleteTag": on(L.EDIT, "run", "run_id", mutating=True),
    "LogBatch": on(L.EDIT, "run", "run_id", mutating=True),
    "LogInputs": on(L.EDIT, "run", "run_id", mutating=True),
    "GetMetricHistory": on(L.READ, "run", "run_id"),
    # Artifact routes are checked like every other call (the first upload message names the run).
    "UploadArtifact": on(L.EDIT, "run", lambda r: r.header.run_id, mutating=True),
    "DownloadArtifact": on(L.READ, "run", "run_id"),
    "ListArtifacts": on(L.READ, "run", "run_id"),
    "DeleteArtifact": on(L.EDIT, "run", "run_id", mutating=True),
    "CreateArtifactUploadUrl": on(L.EDIT, "run", "run_id", mutating=True),
    "CompleteArtifactUpload": on(L.EDIT, "run", "run_id", mutating=True),
    "CreateArtifactDownloadUrl": on(L.READ, "run", "run_id"),
}
