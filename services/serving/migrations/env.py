from modelyard.services.common.db.migrations import run_env
from modelyard.services.serving.store.schema import metadata

run_env(metadata)
