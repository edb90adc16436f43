"""A non-editable ``pip install .`` carries the dashboard's script and style sheet.

The dashboard loads nothing from a CDN, so a wheel without its static files
would be a dashboard without a face. This builds and installs the package
the way a user does (into a target folder, from a copy of the source), then
imports it from there and reads the assets through importlib.resources, as
the dashboard's static route does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ("dashboard.js", "dashboard.css")


@pytest.mark.slow
def test_pip_install_carries_the_dashboard_assets(tmp_path: Path) -> None:
    source = tmp_path / "source"
    # Without the egg-info of the developer's editable install: its SOURCES.txt would
    # carry the assets in even if pyproject's package-data forgot them.
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "."],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
    )
    check = (
        "import sys\n"
        "from importlib import resources\n"
        "import keybroker.gateway.dashboard as board\n"
        "assert board.__file__.startswith(sys.argv[1]), board.__file__\n"
        "for name in sys.argv[2:]:\n"
        "    data = resources.files(board).joinpath('static', name).read_bytes()\n"
        "    sys.stdout.buffer.write(data)\n"
        "    sys.stdout.buffer.write(b'\\0')\n"
    )
    shipped = subprocess.run(
        [sys.executable, "-c", check, str(target), *ASSETS],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")[:-1]
    static = ROOT / "src" / "keybroker" / "gateway" / "dashboard" / "static"
    assert shipped == [(static / name).read_bytes() for name in ASSETS]
