"""Readiness check of start.sh's secured mode (standard library only, no aiokafka).

    python3 scram_check.py STATE_DIR TIMEOUT_S [BROKER_PID]

Connects to LEADSTREAMS_SECURED_BOOTSTRAP of STATE_DIR/secured.env over TLS with the
client certificate (mutual TLS), authenticates with SCRAM-SHA-512 (SaslHandshake v1 +
SaslAuthenticate v1) and checks the server's signature; retries until that succeeds or
TIMEOUT_S passes or BROKER_PID exits (a broker certificate the client rejects fails at
once: retrying cannot fix it). Success means the TLS listener answers, the certificates
fit together and the SCRAM users created at storage-format time are known to the broker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import sys
import time


def _env(path: str) -> dict[str, str]:
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line and not line.startswith("#"))


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Conn:
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.correlation = 0

    def request(self, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + _string("leadstreams-ready")
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        if struct.unpack(">i", data[:4])[0] != self.correlation:
            raise RuntimeError("unexpected correlation id")
        return data[4:]

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            buf += chunk
        return buf

    def authenticate(self, payload: bytes) -> bytes:
        resp = self.request(36, 1, struct.pack(">i", len(payload)) + payload)  # SaslAuthenticate v1
        error = struct.unpack(">h", resp[:2])[0]
        mlen = struct.unpack(">h", resp[2:4])[0]
        pos = 4 + max(mlen, 0)
        if error:
            message = resp[4:pos].decode() if mlen > 0 else ""
            raise RuntimeError(f"SaslAuthenticate error {error}: {message}")
        blen = struct.unpack(">i", resp[pos : pos + 4])[0]
        return resp[pos + 4 : pos + 4 + blen]


def check_once(env: dict[str, str]) -> None:
    host, port = env["LEADSTREAMS_SECURED_BOOTSTRAP"].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=env["LEADSTREAMS_SECURED_CA"])
    ctx.load_cert_chain(env["LEADSTREAMS_SECURED_CLIENT_CERT"])
    with ctx.wrap_socket(
        socket.create_connection((host, int(port)), timeout=5), server_hostname=host
    ) as sock:
        conn = _Conn(sock)
        resp = conn.request(17, 1, _string("SCRAM-SHA-512"))  # SaslHandshake v1
        if error := struct.unpack(">h", resp[:2])[0]:
            raise RuntimeError(f"SaslHandshake error {error}")
        user, password = env["LEADSTREAMS_SECURED_USER"], env["LEADSTREAMS_SECURED_PASSWORD"]
        nonce = base64.b64encode(os.urandom(18)).decode()
        client_first_bare = f"n={user},r={nonce}"
        server_first = conn.authenticate(b"n,," + client_first_bare.encode()).decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        if not fields["r"].startswith(nonce):
            raise RuntimeError("server nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha512")
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{client_first_bare},{server_first},{final_bare}".encode()
        signature = hmac.digest(hashlib.sha512(client_key).digest(), auth_message, "sha512")
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
        server_final = conn.authenticate(f"{final_bare},p={proof}".encode()).decode()
        expected = hmac.digest(hmac.digest(salted, b"Server Key", "sha512"), auth_message, "sha512")
        if server_final != "v=" + base64.b64encode(expected).decode():
            raise RuntimeError(f"bad server signature: {server_final!r}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def main() -> int:
    state, timeout_s = sys.argv[1], float(sys.argv[2])
    pid = int(sys.argv[3]) if len(sys.argv) > 3 else None
    env = _env(os.path.join(state, "secured.env"))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_once(env)
            return 0
        except ssl.SSLCertVerificationError as exc:
            print(f"error: the secured listener's certificate is rejected: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # retried until the deadline, then reported
            if pid is not None and not _alive(pid):
                print(f"error: Kafka exited; last secured check: {exc!r}", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"error: secured listener not ready after {timeout_s:.0f}s: {exc!r}", file=sys.stderr)
                return 1
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
