"""The greeter service: `python examples/greeter/server.py &` (honours --flags and MICRO_* env).

The handler implements the generated ``GreeterHandler`` protocol (examples/greeter/proto, regenerate
with ``bash examples/regen.sh``).
"""

import trio
from proto.greeter_micro import register_greeter_handler
from proto.greeter_pb2 import HelloRequest, HelloResponse

import trimicro


class Greeter:
    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        return HelloResponse(greeting=f"Hello {req.name}")


def main() -> None:
    service = trimicro.Service("greeter", version="latest")
    register_greeter_handler(service, Greeter())
    trio.run(service.run)


if __name__ == "__main__":
    main()
