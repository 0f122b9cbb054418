"""Calls the greeter found through the registry: `python examples/greeter/client.py [name]`."""

import sys

import trio

import trimicro
from examples.greeter.proto.greeter_pb2 import HelloRequest, HelloResponse


async def main(name: str) -> None:
    async with trimicro.open_client(argv=sys.argv[2:]) as client:
        # The server may still be announcing itself: retry discovery for a few seconds.
        with trio.fail_after(15):
            while True:
                try:
                    rsp = await client.call(
                        "greeter", "Greeter.Hello", HelloRequest(name=name), response_type=HelloResponse
                    )
                    break
                except trimicro.MicroError as err:
                    if err.code != 404:
                        raise
                    await trio.sleep(0.2)
    print(rsp.greeting)


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "John")
