from modelyard.services.common.db.migrations import run_env
from modelyard.services.feature_store.store.schema import metadata

run_env(metadata)
