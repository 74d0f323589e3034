"""Input limits of the tracking service, as MLflow's tracking server enforces them."""

import re

# An experiment id: ASCII digits ([0-9], not \d, which matches other scripts' digits that
# int() reads as another id) that fit the BIGINT column. The service validates ids by it; the
# store takes any other text for an id no experiment has.
EXPERIMENT_ID = re.compile(r"^[0-9]{1,18}\Z")

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_DATASETS_PER_CALL = 1000

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RUN_NAME_LENGTH = 250
MAX_USER_ID_LENGTH = 256

MAX_DATASET_NAME_LENGTH = 500
MAX_DATASET_DIGEST_LENGTH = 64
MAX_DATASET_SOURCE_TYPE_LENGTH = 64
MAX_DATASET_SOURCE_LENGTH = 65535
MAX_DATASET_SCHEMA_LENGTH = 1048575
MAX_DATASET_PROFILE_LENGTH = 16384

SEARCH_EXPERIMENTS_DEFAULT = 1000
SEARCH_EXPERIMENTS_MAX = 10000
SEARCH_RUNS_DEFAULT = 1000
SEARCH_RUNS_MAX = 50000
METRIC_HISTORY_DEFAULT = 25000
METRIC_HISTORY_MAX = 100000
LIST_ARTIFACTS_DEFAULT = 1000
LIST_ARTIFACTS_MAX = 10000
# Rows a one-level listing reads per query: a directory's first file makes its entry, and the
# rest of a batch below it is skipped, so a small batch bounds the rows read per entry.
LIST_ARTIFACTS_LEVEL_BATCH = 128
MAX_EXPERIMENTS_PER_SEARCH = 1000
