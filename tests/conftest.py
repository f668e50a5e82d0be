from __future__ import annotations

from pathlib import Path

import pytest

from tests.factory import make_benchmark

SHARED = Path(__file__).resolve().parents[2] / "shared" / "speechrole-official"


@pytest.fixture
def bench_root(tmp_path: Path) -> Path:
    return make_benchmark(tmp_path / "bench")


@pytest.fixture
def official_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/speechrole-official is not present")
    return SHARED
