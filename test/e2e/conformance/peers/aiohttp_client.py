"""A WebSocket client on python3-aiohttp. Instructions (argv[1], JSON): {"url", "compress": bool,
"timeout": seconds, "steps": [...]}, steps being {"op": "send", "type": "text"|"binary", "data"|"size"},
{"op": "recv"}, {"op": "close", "code", "reason"} or {"op": "wait_close"}. Prints one JSON
object: the extension the handshake answered, the messages received, the close code and reason."""
import asyncio

import aiohttp

from common import describe, emit, exit_when_stdin_closes, finish, instructions, payload_of

cfg = instructions()


async def run():
    out = {"client": "aiohttp " + aiohttp.__version__, "received": [], "close_code": None, "close_reason": None}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(cfg["url"], compress=15 if cfg.get("compress") else 0,
                                      max_msg_size=64 * 1024 * 1024, autoping=True) as ws:
            out["extensions"] = ws._response.headers.get("Sec-WebSocket-Extensions")
            out["compress"] = ws.compress
            for step in cfg["steps"]:
                op = step["op"]
                if op == "send":
                    p = payload_of(step)
                    await (ws.send_str(p) if isinstance(p, str) else ws.send_bytes(p))
                elif op == "recv":
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        out["received"].append(describe(msg.data))
                    else:
                        out["unexpected"] = str(msg.type)
                        break
                elif op == "close":
                    await ws.close(code=step["code"], message=step.get("reason", "").encode())
                    out["close_code"] = ws.close_code
                elif op == "wait_close":
                    msg = await ws.receive()
                    out["close_code"] = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else ws.close_code
                    out["close_reason"] = msg.extra if msg.type == aiohttp.WSMsgType.CLOSE else None
    return out


async def main():
    exit_when_stdin_closes()
    try:
        emit(await asyncio.wait_for(run(), cfg.get("timeout", 10)))
    except Exception as err:  # reported, not raised: the test reads the JSON
        emit({"error": f"{type(err).__name__}: {err}"})
    finish()


asyncio.run(main())
