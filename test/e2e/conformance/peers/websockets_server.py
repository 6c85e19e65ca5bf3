"""An upstream WebSocket server on python3-websockets (10.x): echoes messages, and on request
sends a message in many frames or closes with a given code. Instructions (argv[1], JSON):
{"compression": true|false, "timeout": seconds}. Prints one JSON line per event:
listening (with the port), open (path, request headers, the extension it answered),
message (as received), closed (code and reason). Exits after `timeout` or when stdin closes."""
import asyncio

import websockets

from common import describe, emit, exit_when_stdin_closes, finish, instructions, patterned

cfg = instructions()


async def handler(ws, path=None):
    emit({
        "event": "open",
        "path": ws.path,
        "headers": {k.lower(): v for k, v in ws.request_headers.raw_items()},
        "extensions": ws.response_headers.get("Sec-WebSocket-Extensions"),
    })
    try:
        async for msg in ws:
            emit({"event": "message", **describe(msg)})
            if isinstance(msg, str) and msg.startswith("frames "):
                # "frames N SIZE": a text message of SIZE bytes sent as N frames.
                _, n, size = msg.split()
                data = patterned(int(size), True).decode()
                step = -(-len(data) // int(n))
                await ws.send([data[i:i + step] for i in range(0, len(data), step)])
            elif isinstance(msg, str) and msg.startswith("close "):
                _, code, reason = msg.split(" ", 2)
                await ws.close(int(code), reason)
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    emit({"event": "closed", "code": ws.close_code, "reason": ws.close_reason})


async def main():
    exit_when_stdin_closes()
    async with websockets.serve(handler, "127.0.0.1", 0, compression="deflate" if cfg.get("compression", True) else None,
                                max_size=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        emit({"event": "listening", "port": port, "version": websockets.__version__})
        await asyncio.sleep(cfg.get("timeout", 20))
    finish()


asyncio.run(main())
