"""The poller template unit (systemd/netreflex-poller@.service), checked offline."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
TEMPLATE = SYSTEMD / "netreflex-poller@.service"
MAX_EXPOSURE = 2.5  # as for netreflex.service


@pytest.fixture
def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is installed by scripts/test (Debian package systemd)"
    return tool


def local_units(tmp_path: Path) -> tuple[Path, Path]:
    """The template with ExecStart at this environment's netreflex (it must exist), and an
    instance ``pop1`` of it (a symlink, as `systemctl enable netreflex-poller@pop1` makes)."""
    exe = Path(sys.executable).with_name("netreflex")
    assert exe.exists(), "netreflex must be installed in the test environment"
    template = tmp_path / TEMPLATE.name
    template.write_text(TEMPLATE.read_text().replace("/opt/netreflex/bin/netreflex", str(exe)))
    instance = tmp_path / "netreflex-poller@pop1.service"
    instance.symlink_to(template.name)
    return template, instance


def test_template_and_instance_verify_without_a_single_warning(
        tmp_path: Path, systemd_analyze: str) -> None:
    for unit in local_units(tmp_path):
        res = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True,
                             text=True, timeout=60)
        # verify exits 0 even for unknown keys; they only show up as output
        assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), \
            f"{unit.name}: {res.stdout}{res.stderr}"


def test_verify_would_catch_a_broken_template(tmp_path: Path, systemd_analyze: str) -> None:
    template, instance = local_units(tmp_path)
    template.write_text(template.read_text().replace("UMask=0077", "UMask=0077\nUmask=0077"))
    res = subprocess.run([systemd_analyze, "verify", str(instance)], capture_output=True,
                         text=True, timeout=60)
    assert "Unknown key 'Umask'" in res.stdout + res.stderr


def test_hardening_exposure_is_as_low_as_the_main_unit(tmp_path: Path,
                                                       systemd_analyze: str) -> None:
    _, instance = local_units(tmp_path)
    res = subprocess.run([systemd_analyze, "security", "--offline=true", str(instance)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for netreflex-poller@pop1\.service: ([0-9.]+)",
                  res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, res.stdout


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_instance_name_selects_the_config_and_the_state() -> None:
    lines = _directives(TEMPLATE.read_text())
    assert "Environment=NETREFLEX_CONFIG=/etc/netreflex/poller-%i.yaml" in lines
    assert "EnvironmentFile=-/etc/netreflex/poller-%i.env" in lines  # optional override
    assert "ExecStart=/opt/netreflex/bin/netreflex run --config ${NETREFLEX_CONFIG}" in lines
    assert "ExecStartPre=/opt/netreflex/bin/netreflex check ${NETREFLEX_CONFIG}" in lines
    assert "StateDirectory=netreflex/poller-%i" in lines
    for line in ("Type=notify", "RestartPreventExitStatus=78", "Restart=on-failure",
                 "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes"):
        assert line in lines, line


def test_hardening_mirrors_netreflex_service() -> None:
    """Every sandboxing line of the main unit is in the template, unchanged."""
    keys = ("Protect", "Private", "Restrict", "Capability", "Ambient", "NoNewPrivileges",
            "LockPersonality", "MemoryDeny", "RemoveIPC", "SystemCall", "UMask", "ProcSubset",
            "DynamicUser")
    main = [line for line in _directives((SYSTEMD / "netreflex.service").read_text())
            if line.startswith(keys)]
    template = _directives(TEMPLATE.read_text())
    assert len(main) > 20
    assert [line for line in main if line not in template] == []
