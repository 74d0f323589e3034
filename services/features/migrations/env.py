from modelyard.services.common.db.migrations import run_env
from modelyard.services.features.store.schema import metadata

run_env(metadata)
