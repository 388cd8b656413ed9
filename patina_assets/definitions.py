"""The code location Dagster loads (`dagster dev` in the repo root, via workspace.yaml).

The configuration is read from patina.yaml, $PATINA_CONFIG, or the embedded demo default; a malformed
file stops the load with an error that names the field, so nothing runs on a bad config.
"""

from .config import load_config
from .defs import build_definitions

config = load_config()  # what `patina trigger` compares its own with (launching._configured)
defs = build_definitions(config)
