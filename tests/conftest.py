import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Every D1 request counts against an API budget kept in files (patina_assets/engine/api_budget.py):
# tests (and the commands they start) keep theirs in a directory of their own, not in ~/.cache.
if "PATINA_API_BUDGET_DIR" not in os.environ:
    os.environ["PATINA_API_BUDGET_DIR"] = tempfile.mkdtemp(prefix="patina-test-api-budget-")
    atexit.register(shutil.rmtree, os.environ["PATINA_API_BUDGET_DIR"], ignore_errors=True)

# tests/support is imported as `support` by the test modules.
sys.path.insert(0, str(Path(__file__).parent))
