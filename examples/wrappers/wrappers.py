"""Handler and client wrappers: logging and metadata injection by decoration.

python examples/wrappers/wrappers.py
"""

import time

import trio

import trimicro


class Greeter:
    async def Hello(self, req: dict, ctx: trimicro.Context) -> dict:
        return {"greeting": f"Hello {req['name']} (trace {ctx.metadata.get('Trace-Id')})"}


def log_calls(next_handler: trimicro.server.HandlerFunc) -> trimicro.server.HandlerFunc:
    """A handler wrapper: runs around every handler call on the server."""

    async def handler(req: trimicro.Request, ctx: trimicro.Context) -> object:
        start = time.perf_counter()
        try:
            return await next_handler(req, ctx)
        finally:
            print(f"[server] {req.endpoint} took {1000 * (time.perf_counter() - start):.2f} ms")

    return handler


def add_trace(next_call: trimicro.client.CallFunc) -> trimicro.client.CallFunc:
    """A client wrapper: runs around every outgoing call."""

    async def call(req: trimicro.CallRequest) -> object:
        req.metadata["Trace-Id"] = "abc123"
        print(f"[client] calling {req.service} {req.endpoint}")
        return await next_call(req)

    return call


async def main() -> None:
    service = trimicro.Service(
        "greeter", registry=trimicro.registry.MemoryRegistry(), handlers=[Greeter()], argv=[]
    )
    service.wrap_handler(log_calls)
    service.wrap_client(add_trace)
    async with trimicro.open_service(service=service) as svc:
        rsp = await svc.client.call(
            "greeter", "Greeter.Hello", {"name": "John"}, content_type="application/json"
        )
        print(rsp["greeting"])


if __name__ == "__main__":
    trio.run(main)
