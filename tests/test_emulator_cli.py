"""`capstate emulate` as a real subprocess: it prints its URLs, serves, keeps its state in --state across a
real restart, stops cleanly on SIGINT and SIGTERM, and refuses bad arguments in one line with exit 2."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("uvicorn", reason="the emulator needs the 'emulator' extra")

CLI = [sys.executable, "-m", "capstate"]


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*CLI, "emulate", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    url = line.split("listening on ", 1)[1].split()[0]
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(url + "/_emulator/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the emulator did not answer"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serves_then_stops_cleanly(sig: int) -> None:
    proc, url = start("--provider", "bambora,pipwave", "--clock", "2026-01-05T12:00:00Z")
    try:
        health = httpx.get(url + "/_emulator/health").json()
        assert health["providers"] == ["bambora", "pipwave"]
        assert httpx.get(url + "/hellgate/payments/x").status_code == 404  # not emulated in this run
    finally:
        code, err = stop(proc, sig)
    assert code == 0, err
    assert "Traceback" not in err


def test_state_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "emu.db"
    proc, url = start("--provider", "bambora", "--state", str(db), "--clock", "2026-01-05T12:00:00Z")
    try:
        r = httpx.post(url + "/_emulator/payments", json={"provider": "bambora", "reference": "kept", "amount": 900,
                                                         "currency": "SEK"})
        assert r.status_code == 201
        import base64
        auth = "Basic " + base64.b64encode(b"emulator-token@T000000001:emulator-secret").decode()
        r = httpx.post(url + "/bambora/payments/kept/capture/", json={"amount": 400},
                       headers={"Authorization": auth, "API-Version": "1"})
        assert r.status_code == 201
        before = httpx.get(url + "/_emulator/payments/bambora/kept").json()
    finally:
        assert stop(proc, signal.SIGTERM)[0] == 0
    proc, url = start("--provider", "bambora", "--state", str(db))
    try:
        after = httpx.get(url + "/_emulator/payments/bambora/kept").json()
        assert after["captured"] == 400 and after["state"] == "captured"
        assert after["requests"] == before["requests"] and after["events"] == before["events"]
        # The clock carries on from where it was (it runs at real speed; it never restarts at "now").
        assert httpx.get(url + "/_emulator/clock").json()["now"].startswith("2026-01-05T12:")
    finally:
        stop(proc, signal.SIGTERM)


@pytest.mark.parametrize("args", [
    ["--provider", "nope"], ["--port", "70000"], ["--clock", "tomorrow"], ["--set", "nokey"],
    ["--set", "hellgate.settle_after=soon"], ["--set", "hellgate.max_captures=lots"], ["--host", "not a host"],
    ["--provider", "bambora", "--set", "hellgate.max_captures=2"], ["--unknown"],
])
def test_bad_arguments_are_one_line_and_exit_2(args: list[str]) -> None:
    r = subprocess.run([*CLI, "emulate", "--port", "0", *args], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("capstate: error:"), r.stderr


def test_a_state_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    r = subprocess.run([*CLI, "emulate", "--port", "0", "--state", str(bad)], capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert bad.read_bytes() == b"this is not sqlite" * 100  # never written over


def test_a_port_in_use_is_one_line() -> None:
    proc, url = start("--provider", "bambora")
    try:
        port = url.rsplit(":", 1)[1]
        r = subprocess.run([*CLI, "emulate", "--port", port], capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 2 and "cannot listen" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        stop(proc, signal.SIGTERM)


def test_import_capstate_loads_no_starlette() -> None:
    code = ("import sys, capstate, capstate.providers, capstate.providers.emulator._core;"
            "print(any(m.split('.')[0] in ('starlette', 'uvicorn') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.stdout.strip() == "False"


def _nodelay_of_accepted(listening: socket.socket) -> int:
    """TCP_NODELAY on the server side of a connection accepted on `listening` by asyncio, as uvicorn
    accepts them (the transport's own socket)."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                got.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(Probe, sock=listening)
        host, port = listening.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(main())


def test_the_emulators_connections_turn_nagle_off() -> None:
    # With Nagle's algorithm on, each response waited for the client's delayed ACK: ~44 ms a request on
    # loopback instead of ~0.7 ms. asyncio turns it off only on sockets made with IPPROTO_TCP named.
    from capstate._cli.emulate import _bind

    assert _nodelay_of_accepted(_bind("127.0.0.1", 0)) != 0
    plain = socket.socket()  # how the listening socket was made before: the check can fail
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    plain.setblocking(False)
    assert _nodelay_of_accepted(plain) == 0
