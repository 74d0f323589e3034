from modelyard.services.auth.store.schema import metadata
from modelyard.services.common.db.migrations import run_env

run_env(metadata)
