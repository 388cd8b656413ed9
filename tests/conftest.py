import atexit
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

# Every D1 request counts against an API budget kept in files (patina_assets/engine/api_budget.py):
# tests (and the commands they start) keep theirs in a directory of their own, not in ~/.cache.
if "PATINA_API_BUDGET_DIR" not in os.environ:
    os.environ["PATINA_API_BUDGET_DIR"] = tempfile.mkdtemp(prefix="patina-test-api-budget-")
    atexit.register(shutil.rmtree, os.environ["PATINA_API_BUDGET_DIR"], ignore_errors=True)

# tests/support is imported as `support` by the test modules.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3 (and IAM) server on loopback, one per test process (moto keeps its state in the process, so
    a server per module would share it anyway); each test makes its own bucket (`create_bucket`)."""
    from support.s3_server import moto_server

    with moto_server() as endpoint:
        yield endpoint


POSTGRES = "postgresql://postgres@127.0.0.1:5432"  # the machine's PostgreSQL server, trust auth


@pytest.fixture
def postgres_url():
    """A fresh database on the local PostgreSQL server (trust auth), dropped afterwards."""
    import psycopg2

    name = f"patina_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{POSTGRES}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
