"""Fake network devices over real SSH (fakenos) on free loopback ports, with scripted CLI.

Each :class:`FakeCliDevice` is one fakenos host (paramiko SSH server + a command shell)
in this process. Its NOS is a small YAML plugin written to a temporary directory -- the
prompts and the session-preparation commands netmiko sends for the platform -- and the
commands under test answer from :attr:`FakeCliDevice.outputs`, read at every command,
so a test scripts a fault on a session that stays open::

    with FakeCliDevice("cisco_ios", {"show interfaces": text}) as dev:
        poller = CliPoller(device="r1", address=dev.address, config=dev.config(), ...)
        ...
        dev.set_output("show interfaces", text.replace("protocol is up", "protocol is down"))

:meth:`FakeCliDevice.hang` makes a command never answer (a hung session); a ``prompt``
netmiko does not recognise (``prompt="Please wait"``) makes a device that accepts the
login and then never shows a usable prompt (netmiko itself waits ~20 s for one);
:func:`silent_listener` is a TCP port that accepts and never speaks SSH (a dead device);
stopping a device leaves a port that refuses connections.

fakenos sets SO_REUSEPORT, so a stale server on a reused port would silently share it:
every port handed out here is fresh for this process.
"""

from __future__ import annotations

import collections
import contextlib
import io
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko  # type: ignore[import-untyped]
import yaml
from fakenos import FakeNOS  # type: ignore[import-untyped]
from fakenos.plugins.servers.ssh_server_paramiko import (  # type: ignore[import-untyped]
    DEFAULT_SSH_KEY,
)
from pydantic import SecretStr

from probes.cli.config import CliProbeConfig

_HANDED_OUT: set[int] = set()
_PORT_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback TCP port nobody listens on, never returned twice in this process."""
    with _PORT_LOCK:
        for _ in range(100):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError("no fresh loopback port after 100 tries")


# What netmiko's session preparation needs from each platform, and how it refuses an
# unknown command. Prompts are fakenos templates ({base_prompt} is the host name).
_NOS: dict[str, dict[str, Any]] = {
    "cisco_ios": {
        "initial_prompt": "{base_prompt}>",
        "unknown": "% Invalid input detected at '^' marker.",
        "commands": {
            "enable": {"output": None, "new_prompt": "{base_prompt}#"},
            "terminal width 511": {"output": None},
            "terminal length 0": {"output": None},
        },
    },
    "cisco_xr": {
        "initial_prompt": "{base_prompt}#",
        "unknown": "% Invalid input detected at '^' marker.",
        "commands": {
            "terminal width 511": {"output": None},
            "terminal length 0": {"output": None},
        },
    },
    "juniper_junos": {
        "initial_prompt": "{base_prompt}>",
        "unknown": "syntax error, expecting <command>.",
        "commands": {
            "set cli screen-width 511": {"output": "Screen width set to 511"},
            "set cli screen-length 0": {"output": "Screen length set to 0"},
            "set cli complete-on-space off": {"output": "Disabling complete-on-space"},
        },
    },
    "huawei": {
        "initial_prompt": "<{base_prompt}>",
        "unknown": "Error: Unrecognized command found at '^' position.",
        "commands": {
            "screen-length 0 temporary": {
                "output": "Info: The configuration takes effect on the current user "
                "terminal interface only."
            },
        },
    },
    "huawei_smartax": {
        "initial_prompt": "{base_prompt}>",
        "unknown": "% Unknown command, the error locates at '^'",
        "commands": {
            "enable": {"output": None, "new_prompt": "{base_prompt}#"},
            "disable": {"output": None, "new_prompt": "{base_prompt}>"},
            "undo smart": {"output": None},
            "infoswitch cli OFF": {"output": None},
            "scroll": {"output": None},
            "quit": {
                "output": "  Check whether system data has been changed. Please save data "
                "before logout.\n  Are you sure to log out? (y/n)[n]:"
            },
            "y": {"output": True},  # fakenos: True ends the session
        },
    },
}


# Config mode, for remediation tests: the command that enters it, its prompt, the one that
# leaves it (netmiko's exit_config_mode), and prompts of sub-modes by command prefix.
_CONFIG_MODE: dict[str, dict[str, Any]] = {
    "cisco_ios": {
        "enter": "configure terminal", "prompt": "{base_prompt}(config)#",
        "exit": "end", "exec_prompt": "{base_prompt}#",
        "sub": {"interface ": "{base_prompt}(config-if)#"},
    },
    "huawei_smartax": {
        "enter": "config", "prompt": "{base_prompt}(config)#",
        "exit": "return", "exec_prompt": "{base_prompt}#",
        "sub": {"interface gpon ": "{base_prompt}(config-if-gpon)#"},
    },
}


class FakeCliDeviceError(RuntimeError):
    """fakenos did not start listening in time."""


class FakeCliDevice:
    """One fakenos SSH device; a context manager, or start()/stop() (restartable)."""

    address = "127.0.0.1"

    def __init__(
        self,
        platform: str,
        outputs: Mapping[str, str] | None = None,
        *,
        username: str = "noc-reader",
        password: str = "Fake-Pw-7c1e",  # distinctive, so tests can look for leaks
        name: str = "lab-dev",
        prompt: str | None = None,
        start_timeout: float = 5.0,
        config_commands: tuple[str, ...] = (),
    ) -> None:
        if platform not in _NOS:
            raise ValueError(f"no fake NOS for {platform!r} (have: {', '.join(_NOS)})")
        self.platform = platform
        self.username = username
        self.password = password
        self.name = name
        self.prompt = prompt
        self.outputs: dict[str, str] = dict(outputs or {})
        self.calls: collections.Counter[str] = collections.Counter()
        # config-mode lines the device accepts (remediation tests); every scripted command
        # it got, in order, is in ``received``
        self.config_commands = config_commands
        if config_commands and platform not in _CONFIG_MODE:
            raise ValueError(f"no fake config mode for {platform!r}")
        self.received: list[str] = []
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._hung: dict[str, threading.Event] = {}
        self._port = free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix="fakenos-"))
        self._net: Any = None

    # --- lifecycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._net is not None

    def start(self) -> FakeCliDevice:
        """Start serving (on the same port after a stop) and wait until it listens."""
        if self._net is not None:
            return self
        plugin = self._workdir / f"{self.platform}.yaml"
        plugin.write_text(yaml.safe_dump(self._plugin()), encoding="utf-8")
        net = FakeNOS(
            inventory={
                "default": {
                    "server": {
                        "plugin": "ParamikoSshServer",
                        "configuration": {"address": self.address, "timeout": 1},
                    },
                },
                "hosts": {
                    self.name: {
                        "username": self.username,
                        "password": self.password,
                        "port": self._port,
                        "nos": {
                            "plugin": str(plugin),
                            "configuration": {"commands": self._scripted()},
                        },
                    }
                },
            }
        )
        net.start()
        self._net = net
        try:
            self._wait_listening(net)
        except FakeCliDeviceError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving; the port then refuses connections. Releases hung commands."""
        with self._lock:
            for event in self._hung.values():
                event.set()
            self._hung.clear()
        net, self._net = self._net, None
        if net is not None:
            _wake_accepting(net)
            net.stop()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> FakeCliDevice:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- scripting -----------------------------------------------------------------

    def set_output(self, command: str, text: str) -> None:
        """What ``command`` prints from now on (it must be one given at construction)."""
        if command not in self.outputs:
            raise KeyError(f"{command!r} was not scripted when the device was built")
        with self._lock:
            self.outputs[command] = text

    def hang(self, command: str) -> None:
        """From now on ``command`` never answers (until :meth:`release` or stop)."""
        with self._lock:
            self._hung.setdefault(command, threading.Event())

    def release(self, command: str) -> None:
        with self._lock:
            event = self._hung.pop(command, None)
        if event is not None:
            event.set()

    def host_key(self) -> str:
        """The server's public host key as a known_hosts entry's "type base64" part."""
        key = paramiko.RSAKey(file_obj=io.StringIO(DEFAULT_SSH_KEY))
        return f"{key.get_name()} {key.get_base64()}"

    def config(self, **overrides: Any) -> CliProbeConfig:
        """A probe config that logs in to this device (fields may be overridden)."""
        fields: dict[str, Any] = {
            "platform": self.platform,
            "port": self._port,
            "username": self.username,
            "password": SecretStr(self.password),
            "timeout": 5.0,
        }
        fields.update(overrides)
        return CliProbeConfig(**fields)

    # --- internals -----------------------------------------------------------------

    def _plugin(self) -> dict[str, Any]:
        nos = _NOS[self.platform]
        commands: dict[str, Any] = {
            "_default_": {"output": nos["unknown"], "help": "unknown command"},
        }
        for command, spec in nos["commands"].items():
            commands[command] = {"help": "session preparation", **spec}
        return {
            "name": f"netreflex-{self.platform}",
            "initial_prompt": self.prompt or nos["initial_prompt"],
            "commands": commands,
        }

    def _scripted(self) -> dict[str, Any]:
        scripted = {
            command: {"output": self._answer(command), "help": "scripted by the test"}
            for command in self.outputs
        }
        if self.config_commands:
            mode = _CONFIG_MODE[self.platform]
            prompts = {mode["enter"]: mode["prompt"], mode["exit"]: mode["exec_prompt"]}
            for command in self.config_commands:
                prefix = next((p for p in mode["sub"] if command.startswith(p)), None)
                prompts[command] = mode["sub"][prefix] if prefix is not None else None
            for command, prompt in prompts.items():
                scripted[command] = {"output": self._answer(command, prompt),
                                     "help": "config mode, scripted by the test"}
        return scripted

    def _answer(self, command: str, new_prompt: str | None = None) -> Callable[..., Any]:
        # A plain function (fakenos deep-copies its command table per session; a
        # function is copied by reference, so every session sees the current output).
        def answer(_device: Any, **_kwargs: Any) -> Any:
            with self._lock:
                self.calls[command] += 1
                self.received.append(command)
                event = self._hung.get(command)
                text = self.outputs.get(command)
            if event is not None:
                event.wait(60)
                return ""
            if new_prompt is not None:
                return {"output": text, "new_prompt": new_prompt}
            return text

        return answer

    def _wait_listening(self, net: Any) -> None:
        deadline = time.monotonic() + self.start_timeout
        server = net.hosts[self.name].server
        while time.monotonic() < deadline:
            sock = getattr(server, "_socket", None)
            with contextlib.suppress(OSError):
                if sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    return
            time.sleep(0.005)
        raise FakeCliDeviceError(
            f"fakenos {self.platform} on port {self._port} did not listen within "
            f"{self.start_timeout:g} s"
        )


def _wake_accepting(net: Any) -> None:
    """fakenos waits for a client's channel with ``Transport.accept()`` and no timeout;
    when the client leaves before opening one (a failed login) nothing wakes it, and the
    non-daemon thread keeps the test process from exiting. Wake them: accept() returns
    None and the connection thread ends (with a traceback in fakenos)."""
    for host in net.hosts.values():
        for transport in list(getattr(host.server, "_active_sessions", ())):
            with transport.lock:
                transport.server_accept_cv.notify_all()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says anything (a device
    whose SSH daemon hangs): yields the port; connections are closed on exit."""
    server = socket.socket()
    server.bind(("127.0.0.1", free_port()))
    server.listen(16)
    server.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(1)
        for conn in accepted:
            conn.close()
        server.close()
