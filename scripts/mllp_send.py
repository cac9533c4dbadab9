#!/usr/bin/env python3
"""Sends HL7 v2 messages over MLLP and prints each acknowledgement: a plain client to try the
gateway's listener (mllp.port) by hand.

  scripts/mllp_send.py [--host 127.0.0.1] [--port 2575] FILE...   (or - for standard input)

Each FILE holds one message; segments may end with CR, LF or CRLF (sent as CR). No TLS: for the
demo configuration on loopback (production requires TLS with a client certificate).
"""
import argparse
import socket
import sys


def frame(message: bytes) -> bytes:
    return b"\x0b" + message + b"\x1c\x0d"


def read_frame(sock: socket.socket) -> bytes:
    data = b""
    while b"\x1c\x0d" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the connection closed without an acknowledgement")
        data += chunk
    start = data.find(b"\x0b")
    return data[start + 1:data.find(b"\x1c\x0d")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2575)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    with socket.create_connection((args.host, args.port), timeout=30) as sock:
        for name in args.files:
            raw = sys.stdin.buffer.read() if name == "-" else open(name, "rb").read()
            message = b"\r".join(line for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n") if line) + b"\r"
            sock.sendall(frame(message))
            ack = read_frame(sock)
            print(ack.replace(b"\r", b"\n").decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
