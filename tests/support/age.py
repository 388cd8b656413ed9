"""The age command-line tool, the outside check that what Patina encrypted opens without Patina."""

import shutil


def age_cli() -> str:
    """Debian's `age` package (.ci/run installs it when missing)."""
    path = shutil.which("age")
    assert path, "the age command-line tool is missing: apt-get install age (Debian/Ubuntu), brew install age"
    return path
