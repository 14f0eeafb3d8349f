"""A real mosquitto broker on free loopback ports (TESTING.md, MQTT).

Three listeners: ``port`` (anonymous), ``auth_port`` (user ``netreflex`` /
``mqtt-pass-123`` from a password file) and ``tls_port`` (TLS with a CA and server
certificate made for the run; anonymous). ``user root`` is written when running as root,
or mosquitto drops to the ``mosquitto`` user and cannot write its persistence directory.
:meth:`stop` ends the broker by its PID; :meth:`start` again reuses the ports (the broker
"restarts"). Fails with mosquitto's captured output when it does not come up.

Persistence lives in :attr:`dir` and survives :meth:`stop` / :meth:`start` (and
:meth:`restart`): SIGTERM makes mosquitto save persistent sessions and the QoS 1 messages
queued for them. :meth:`kill` is a crash (SIGKILL): only what was autosaved survives.
``max_queued_messages`` is what the broker keeps per disconnected persistent client
(mosquitto's default, 1000, is too small for a bus test that keeps a subscriber away).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "netreflex"
PASSWORD = "mqtt-pass-123"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for 127.0.0.1 / localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netreflex test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = (directory / "ca.pem", directory / "server.pem",
                                    directory / "server.key")
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


class MosquittoError(RuntimeError):
    """mosquitto did not start; the message carries its output."""


class Mosquitto:
    def __init__(self, *, start_timeout: float = 10.0,
                 max_queued_messages: int = 100_000) -> None:
        if shutil.which("mosquitto") is None:
            raise MosquittoError("mosquitto is not installed: apt-get install -y mosquitto "
                                 "mosquitto-clients")
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.start_timeout = start_timeout
        self.max_queued_messages = max_queued_messages
        self.port = free_tcp_port()
        self.auth_port = free_tcp_port()
        self.tls_port = free_tcp_port()
        self.ca, self.cert, self.key = make_ca_and_server_cert(self.dir)
        self.passwd = self.dir / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(self.passwd), USER, PASSWORD],
                       check=True, capture_output=True)
        if os.geteuid() == 0:
            os.chmod(self.passwd, 0o600)
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_conf()

    def _write_conf(self) -> None:
        lines = [
            *(["user root"] if os.geteuid() == 0 else []),
            "per_listener_settings true",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"listener {self.auth_port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {self.passwd}",
            f"listener {self.tls_port} 127.0.0.1",
            "allow_anonymous true",
            f"cafile {self.ca}",
            f"certfile {self.cert}",
            f"keyfile {self.key}",
            "persistence true",
            f"persistence_location {self.dir}/",
            f"max_queued_messages {self.max_queued_messages}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> Mosquitto:
        out = self.log.open("ab")
        self._proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MosquittoError(f"mosquitto exited with {self._proc.returncode}:\n"
                                     + self.log.read_text(errors="replace"))
            if all(self._listening(p) for p in (self.port, self.auth_port, self.tls_port)):
                return self
            time.sleep(0.05)
        self.stop()
        raise MosquittoError(f"mosquitto not listening within {self.start_timeout}s:\n"
                             + self.log.read_text(errors="replace"))

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        """Stop (SIGTERM: sessions and queued messages are saved) and start again on the
        same ports with the same persistence directory."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL by PID: a broker crash."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")
