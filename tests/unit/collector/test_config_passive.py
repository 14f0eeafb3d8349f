"""A passive element (splitter, patch panel) in the inventory cannot be polled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from collector.cli import main
from collector.config import load_config

ETC = Path(__file__).resolve().parents[3] / "etc"


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    shutil.copytree(ETC, tmp_path / "etc")
    return tmp_path / "etc"


def test_polling_a_passive_device_is_refused_with_file_line_and_fix(
        etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = etc / "inventory.yaml"
    inv.write_text(inv.read_text().replace("  olt1:\n    role: access",
                                           "  olt1:\n    role: passive"))
    cfg = etc / "netreflex.yaml"
    line = next(i + 1 for i, l in enumerate(cfg.read_text().splitlines()) if l == "  olt1:")
    assert main(["check", str(cfg)]) == 78
    err = capsys.readouterr().err.splitlines()
    assert err[:-1] == [
        f"{cfg}:{line}: devices.olt1: device is passive in the inventory (a splitter or "
        "patch panel: nothing answers a poll); remove it from devices: here, or fix its "
        "role in the inventory if it is an active device"
    ]
    assert "nothing was started" in err[-1]


def test_a_passive_device_that_is_not_polled_is_fine(etc: Path) -> None:
    inv = etc / "inventory.yaml"
    inv.write_text(inv.read_text().replace(
        "  sw3:\n", "  spl1:\n    role: passive\n    parents: [olt1]\n  sw3:\n"))
    settings = load_config(etc / "netreflex.yaml")
    assert settings.inventory.devices["spl1"].passive
    assert "spl1" not in settings.config.devices
