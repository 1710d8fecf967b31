"""The wheel installs one top-level name, ``partita``, with the three code packages under it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from .harness import REPO


def test_the_wheel_contains_only_the_partita_package_and_its_command(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("partita-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"partita"}
    for module in ("actors/cli.py", "actors/decider/decide.py", "transport/client.py", "schemas/messages.py"):
        assert f"partita/{module}" in names
    assert "partita/schemas/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "partita = partita.actors.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
