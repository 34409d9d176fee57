"""An http-stream function for the fake driver: a real unix-socket HTTP server in-process.

It follows Fn's contract the way the FDKs do (bind ``phonylsnr.sock``, chmod, symlink
``lsnr.sock``), so the agent's readiness watch, HTTP client and status table are exercised for
real, without Docker. The handler decides each answer; it may also end the "process".
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drivers.fake import Program, ProgramContext


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    exit_code: int | None = None
    """End the process with this code instead of answering (a crash mid-call)."""
    hang_up: bool = False
    """Close the connection instead of answering, and live on."""


Handler = Callable[[Request, ProgramContext], Awaitable[Answer]]


async def echo_handler(request: Request, ctx: ProgramContext) -> Answer:
    return Answer(body=request.body)


def http_function(
    handler: Handler = echo_handler, *, listen_delay_s: float = 0.0, exit_before: int | None = None
) -> Program:
    """A Program serving ``handler`` on the task's socket dir."""

    async def program(ctx: ProgramContext) -> int:
        if listen_delay_s:
            await ctx.sleep(listen_delay_s)
        if exit_before is not None:
            await ctx.stderr.write(b"exiting before listen\n")
            return exit_before
        socket_dir = ctx.task.uds_path
        assert socket_dir is not None, "an http-stream task has a socket dir"
        ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    request = await _read_request(reader)
                    if request is None:
                        return
                    await ctx.checkpoint()
                    answer = await handler(request, ctx)
                    await ctx.checkpoint()
                    if answer.hang_up:
                        return
                    if answer.exit_code is not None:
                        if not ended.done():
                            ended.set_result(answer.exit_code)
                        writer.close()
                        return
                    head = [f"HTTP/1.1 {answer.status} X\r\n"]
                    head += [f"{k}: {v}\r\n" for k, v in answer.headers.items()]
                    head.append(f"Content-Length: {len(answer.body)}\r\n\r\n")
                    writer.write("".join(head).encode() + answer.body)
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                return
            finally:
                writer.close()

        phony = os.path.join(socket_dir, "phonylsnr.sock")
        server = await asyncio.start_unix_server(serve, phony)
        os.chmod(phony, 0o666)
        os.symlink("phonylsnr.sock", os.path.join(socket_dir, "lsnr.sock"))
        try:
            async with server:
                return await ended
        finally:
            server.close()

    return program


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        block = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = block[:-4].decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)
