"""The committed stubs in libs/backcast/v1 match what the protos generate."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_stubs_changes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "generate_protos.sh"), str(tmp_path)],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )

    committed = ROOT / "libs" / "backcast" / "v1"
    fresh = tmp_path / "backcast" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(
        p.name for p in committed.iterdir() if p.name != "__pycache__"
    )
    _, mismatch, errors = filecmp.cmpfiles(committed, fresh, names, shallow=False)
    assert mismatch == [], f"stale generated stubs: {mismatch}; run make protos"
    assert errors == []
