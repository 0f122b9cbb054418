"""A function: a service that handles one request and exits (Go Micro's micro.NewFunction).

python examples/function/function.py
"""

import trio

import trimicro


class Echo:
    def __init__(self, service: trimicro.Service) -> None:
        self.service = service

    async def Call(self, req: dict, ctx: trimicro.Context) -> dict:
        self.service.stop()  # one request, then deregister, drain and exit
        return {"echo": req}


async def main() -> None:
    registry = trimicro.registry.MemoryRegistry()
    function = trimicro.Service("echo-fn", registry=registry, argv=[], handle_signals=False)
    function.handle(Echo(function))
    async with trio.open_nursery() as nursery:
        await nursery.start(function.run)
        async with trimicro.open_client(registry=registry) as client:
            print(
                await client.call("echo-fn", "Echo.Call", {"hello": "world"}, content_type="application/json")
            )
    print("function exited after one call")


if __name__ == "__main__":
    trio.run(main)
