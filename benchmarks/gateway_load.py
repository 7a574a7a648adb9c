"""The load generator of benchmarks/gateway_latency.py. It runs inside a container of the qc-mcp
image (python3 with the mcp 1.x client), attached to the stack's `mcp` and `door` networks, so
qc-mcp and the gateway are measured from the same place, with the same client.

argv[1] is a JSON plan: {"paths": {name: {"url": ..., "token": ... | null}}, "concurrency":
[...], "ops": [...], "calls": {str(c): total calls per path}, "rounds": R, "warmup": W,
"deadline_seconds": S}. For each concurrency c it opens c sessions on every path, warms each
up, then runs each operation in R rounds, the paths taking turns (their order alternating) so
that drift and noise from other work on the machine fall on all of them alike. Each session
calls in a closed loop; each call's latency is the time from sending the request to having
its parsed answer; a call that takes over CALL_TIMEOUT seconds counts as an error. Prints one
JSON line on stdout per batch ({"key": "path|op|c", "ms": [...], "errors": [...]}), so that
what was measured survives a path that breaks down part way.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

CALL_TIMEOUT = 30.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def open_session(stack: AsyncExitStack, url: str, token: str | None) -> ClientSession:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = await stack.enter_async_context(
        httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30.0, read=300.0))
    )
    read, write, _ = await stack.enter_async_context(streamable_http_client(url, http_client=http))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session


async def one_call(session: ClientSession, op: str) -> None:
    if op == "tools/list":
        result: Any = await session.list_tools()
        if not result.tools:
            raise RuntimeError("tools/list answered no tools")
    else:
        result = await session.call_tool(op, {})
        if result.isError:
            raise RuntimeError(f"{op} answered an error: {str(result.content)[:200]}")


async def worker(
    session: ClientSession, op: str, calls: int, out: list[float], errors: list[str]
) -> None:
    for _ in range(calls):
        started = time.perf_counter()
        try:
            await asyncio.wait_for(one_call(session, op), CALL_TIMEOUT)
        except Exception as error:  # counted and reported, never silently dropped
            errors.append(f"{type(error).__name__}: {error}"[:300])
            continue
        out.append((time.perf_counter() - started) * 1000.0)


def emit(key: str, samples: list[float], errors: list[str]) -> None:
    print(json.dumps({"key": key, "ms": samples, "errors": errors}), flush=True)


Job = tuple[str, int, list[float], list[str], "asyncio.Future[None]"]


async def session_task(path: dict[str, Any], inbox: asyncio.Queue[Job | None]) -> None:
    """One client session, in a task of its own (its anyio scopes open and close here, so a
    session on a path that went down can be abandoned without disturbing the others). Runs
    the jobs it is given; a job it cannot run any more is answered with an error."""
    try:
        async with AsyncExitStack() as stack:
            session = await open_session(stack, path["url"], path.get("token"))
            while (job := await inbox.get()) is not None:
                op, calls, samples, errors, done = job
                try:
                    await worker(session, op, calls, samples, errors)
                finally:
                    done.set_result(None)
    except Exception as error:
        reason = f"session: {type(error).__name__}: {error}"[:300]
    else:
        return
    while True:  # answer what is left, now and from here on
        job = await inbox.get()
        if job is None:
            return
        job[3].append(reason)
        job[4].set_result(None)


class Group:
    """c sessions on one path."""

    def __init__(self, path: dict[str, Any], c: int) -> None:
        self.inboxes: list[asyncio.Queue[Job | None]] = [asyncio.Queue() for _ in range(c)]
        self.tasks = [asyncio.create_task(session_task(path, inbox)) for inbox in self.inboxes]

    async def run(self, op: str, calls: int, samples: list[float], errors: list[str]) -> None:
        loop = asyncio.get_running_loop()
        dones = [loop.create_future() for _ in self.inboxes]
        for inbox, done in zip(self.inboxes, dones, strict=True):
            inbox.put_nowait((op, calls, samples, errors, done))
        await asyncio.gather(*dones)

    async def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put_nowait(None)
        _, pending = await asyncio.wait(self.tasks, timeout=30)
        for task in pending:  # a path that went down can make closing hang
            task.cancel()


async def main(plan: dict[str, Any]) -> None:
    deadline = time.monotonic() + float(plan["deadline_seconds"])
    paths: dict[str, dict[str, Any]] = plan["paths"]
    ops: list[str] = plan["ops"]
    for c in plan["concurrency"]:
        groups = {name: Group(path, c) for name, path in paths.items()}
        alive = dict(groups)
        for name, group in groups.items():
            for op in ops * plan["warmup"]:
                errors: list[str] = []
                await group.run(op, 1, [], errors)
                if errors:
                    emit(f"{name}|{op}|{c}", [], [f"warm-up: {errors[0]}"])
                    del alive[name]
                    break
        per_round = max(1, int(plan["calls"][str(c)]) // (plan["rounds"] * c))
        for op in ops:
            for round_number in range(plan["rounds"]):
                order = list(alive) if round_number % 2 == 0 else list(reversed(alive))
                for name in order:
                    if time.monotonic() > deadline:
                        raise SystemExit("deadline reached: measurement incomplete")
                    samples: list[float] = []
                    errors = []
                    await alive[name].run(op, per_round, samples, errors)
                    emit(f"{name}|{op}|{c}", samples, errors)
                    if errors and not samples:  # the path is down: stop waiting on it
                        log(f"  {name} answers nothing at c={c}: left out from here on")
                        del alive[name]
            log(f"  c={c:<3} {op:<12} done")
        for group in groups.values():
            await group.close()


if __name__ == "__main__":
    code = 0
    try:
        asyncio.run(main(json.loads(sys.argv[1])))
    except BaseException as error:  # reported; what was measured is already out
        log(f"load generator stopped: {type(error).__name__}: {error}")
        code = 1
    sys.stdout.flush()
    os._exit(code)  # do not wait on sessions left open on a path that went down
