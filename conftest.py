"""Fixtures shared by tests/ and bench/.

`shared_data("scifact")` returns the directory of a real test collection kept beside the
repository (../shared/data/NAME, or $RANK_SHARED_DATA/NAME) and skips the test when it is
absent: the collections are never copied into the repository.
"""
import os
from pathlib import Path

import pytest

_DATA_ROOT = Path(os.environ.get("RANK_SHARED_DATA",
                                 Path(__file__).resolve().parent.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    def get(name):
        path = _DATA_ROOT / name
        if not path.is_dir():
            pytest.skip(f"test collection {name!r} not found under {_DATA_ROOT}")
        return path

    return get
