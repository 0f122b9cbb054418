"""Calls the greeter found through the registry: `python examples/greeter/client.py John`
(with the server running)."""

import sys

import trio
from proto.greeter_micro import GreeterClient
from proto.greeter_pb2 import HelloRequest

import trimicro


async def main(name: str) -> None:
    async with trimicro.open_client(argv=sys.argv[2:]) as client:
        greeter = GreeterClient("greeter", client)
        # The server may still be announcing itself: retry discovery for a few seconds.
        with trio.fail_after(15):
            while True:
                try:
                    rsp = await greeter.Hello(HelloRequest(name=name), timeout=2.0)
                    break
                except trimicro.MicroError as err:
                    if err.code != 404:
                        raise
                    await trio.sleep(0.2)
    print(rsp.greeting)


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "John")
