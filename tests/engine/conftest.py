"""Fixtures shared by the engine's tests: the awkward corpus, and workerd's D1 serving it (and the shared
corpus) over the REST API, both built once per test session; a small database and its dump."""

from pathlib import Path

import pytest
from support import awkward
from support.configs import small_database
from support.rest_worker import WorkerD1Server

from patina_assets.engine import dump_database, open_source

# ../shared/corpus beside the checkout (/work/main), also from a worktree nested deeper (/work/wt/NAME).
CORPUS = next(
    (d / "shared" / "corpus" for d in Path(__file__).resolve().parents if (d / "shared" / "corpus").is_dir()),
    Path(__file__).resolve().parents[3] / "shared" / "corpus",
)
CORPUS_DATABASES = sorted(CORPUS.glob("*.sqlite"))


@pytest.fixture(scope="session")
def awkward_corpus(tmp_path_factory) -> dict[str, Path]:
    return awkward.build_all(tmp_path_factory.mktemp("awkward"))


@pytest.fixture(scope="session")
def workerd_d1(awkward_corpus, tmp_path_factory):
    """One `wrangler dev --local` for the session, answering D1's REST API from workerd's D1: database
    `awkward-<case>` for each awkward case, `corpus-<stem>` for each database of the shared corpus."""
    databases = {f"awkward-{case}": path for case, path in awkward_corpus.items()}
    databases.update({f"corpus-{path.stem}": path for path in CORPUS_DATABASES})
    with WorkerD1Server(databases, tmp_path_factory.mktemp("workerd-d1")) as server:
        yield server


@pytest.fixture
def dump(tmp_path) -> tuple[Path, Path]:
    """A small database (40 rows) and its dump as `groveauth`: what the D1 import tests restore."""
    source = small_database(tmp_path / "source.sqlite", 40)
    with open_source(str(source)) as s:
        dump_database(s, tmp_path / "dump.sql.zst", database="groveauth")
    return source, tmp_path / "dump.sql.zst"
