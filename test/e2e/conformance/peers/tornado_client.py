"""A WebSocket client on python3-tornado. Same instructions and output as aiohttp_client.py."""
import asyncio

import tornado
from tornado.websocket import websocket_connect

from common import describe, emit, exit_when_stdin_closes, finish, instructions, payload_of

cfg = instructions()


async def run():
    out = {"client": "tornado " + tornado.version, "received": [], "close_code": None, "close_reason": None}
    conn = await websocket_connect(cfg["url"], compression_options={} if cfg.get("compress") else None,
                                   max_message_size=64 * 1024 * 1024)
    out["extensions"] = conn.headers.get("Sec-WebSocket-Extensions") if conn.headers is not None else None
    for step in cfg["steps"]:
        op = step["op"]
        if op == "send":
            p = payload_of(step)
            await conn.write_message(p, binary=not isinstance(p, str))
        elif op == "recv":
            msg = await conn.read_message()
            if msg is None:
                out["unexpected"] = "closed"
                break
            out["received"].append(describe(msg))
        elif op == "close":
            conn.close(step["code"], step.get("reason", ""))
            while await conn.read_message() is not None:
                pass
            out["close_code"] = conn.close_code
        elif op == "wait_close":
            while await conn.read_message() is not None:
                pass
            out["close_code"] = conn.close_code
            out["close_reason"] = conn.close_reason
    return out


async def main():
    exit_when_stdin_closes()
    try:
        emit(await asyncio.wait_for(run(), cfg.get("timeout", 10)))
    except Exception as err:  # reported, not raised: the test reads the JSON
        emit({"error": f"{type(err).__name__}: {err}"})
    finish()


asyncio.run(main())
