"""Shared by the conformance peers: argv/stdin handling, JSON output, deterministic payloads."""
import hashlib
import json
import os
import sys
import threading


def instructions():
    """The peer's instructions: a JSON object in argv[1]."""
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def emit(obj):
    """One JSON result per line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def finish():
    """Exits at once, output flushed (the stdin watcher thread must not hold up the interpreter's exit)."""
    sys.stdout.flush()
    os._exit(0)


def exit_when_stdin_closes():
    """The test holds our stdin open: when it goes away (or kills us), so do we."""
    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def patterned(size, text):
    """The same bytes as the Node side's patterned(): printable ASCII for text."""
    if text:
        return bytes(0x20 + (i % 95) for i in range(size))
    return bytes((i * 131 + 17) & 0xFF for i in range(size))


def describe(data):
    """A received message as the tests compare it."""
    b = data.encode() if isinstance(data, str) else bytes(data)
    out = {"type": "text" if isinstance(data, str) else "binary", "len": len(b), "sha256": hashlib.sha256(b).hexdigest()}
    if len(b) <= 200:
        out["data"] = data if isinstance(data, str) else b.hex()
    return out


def payload_of(step):
    """What a send step sends: {"type": "text"|"binary", "data": "..."} or {"type", "size": N}."""
    text = step.get("type", "text") == "text"
    if "size" in step:
        p = patterned(step["size"], text)
        return p.decode() if text else p
    return step["data"] if text else bytes.fromhex(step["data"])
