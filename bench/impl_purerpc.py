"""purerpc 0.8 on trio (via anyio). It needs h2 < 4, so it runs from its own virtualenv (see run.py).

purerpc's ``Server.serve_async`` binds every interface; the bench must stay on loopback, so ``serve``
repeats its few lines with ``local_host="127.0.0.1"``.
"""

# No "from __future__ import annotations": purerpc reads the handlers' annotations as types.

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import purerpc
from purerpc.rpc import Cardinality, RPCSignature
from purerpc.server import ConnectionHandler

from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse, StreamRequest, StreamResponse

SERVICE = "greeter.Greeter"


def _service() -> purerpc.Service:
    service = purerpc.Service(SERVICE)

    @service.rpc("Hello")
    async def hello(message: HelloRequest) -> HelloResponse:
        return HelloResponse(greeting="Hello " + message.name)

    @service.rpc("Stream")
    async def stream(message: StreamRequest) -> purerpc.Stream[StreamResponse]:
        for i in range(message.count):
            yield StreamResponse(count=i, message="hello")

    @service.rpc("Echo")
    async def echo(messages: purerpc.Stream[EchoMessage]) -> purerpc.Stream[EchoMessage]:
        async for msg in messages:
            yield msg

    return service


async def serve(announce: Callable[[int], None]) -> None:
    server = purerpc.Server(port=0)
    server.add_service(_service())
    async with AsyncExitStack() as stack:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        announce(listener.extra(anyio.abc.SocketAttribute.local_port))
        services = {name: await stack.enter_async_context(cm) for name, cm in server.services.items()}
        await listener.serve(ConnectionHandler(services, server))


HELLO = RPCSignature(Cardinality.UNARY_UNARY, HelloRequest, HelloResponse)
STREAM = RPCSignature(Cardinality.UNARY_STREAM, StreamRequest, StreamResponse)


class PurerpcClient:
    def __init__(self, address: str, stack: AsyncExitStack) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.stack = stack
        self.client: Any = None

    async def start(self) -> None:
        self.client = await self._client()

    async def _client(self) -> Any:
        channel = await self.stack.enter_async_context(purerpc.insecure_channel(self.host, self.port))
        client = purerpc.Client(SERVICE, channel)
        client.hello = client.get_method_stub("Hello", HELLO)
        client.stream = client.get_method_stub("Stream", STREAM)
        return client

    async def unary(self, name: str) -> None:
        rsp = await self.client.hello(HelloRequest(name=name))
        if len(rsp.greeting) != len(name) + 6:
            raise AssertionError("bad greeting")

    async def server_stream(self, count: int, progress: list[int]) -> None:
        responses = self.client.stream(StreamRequest(count=count))
        try:
            async for _ in responses:
                progress[0] += 1
        finally:
            await responses.aclose()

    @asynccontextmanager
    async def bidi(self, client: Any = None) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
        stream = await (client or self.client).rpc("Echo", EchoMessage, EchoMessage)

        async def ping(seq: int) -> None:
            await stream.send_message(EchoMessage(text="ping", seq=seq))
            back = await stream.receive_message()
            if back.seq != seq:
                raise AssertionError("out of order")

        yield ping
        await stream.close()

    async def hold_idle(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        for _ in range(n):
            client = await self._client()
            await client.hello(HelloRequest(name="world"))
        await ready()

    async def hold_streams(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        async with AsyncExitStack() as stack:
            for _ in range(n):
                ping = await stack.enter_async_context(self.bidi())
                await ping(0)
            await ready()


@asynccontextmanager
async def open_client(address: str) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        client = PurerpcClient(address, stack)
        await client.start()
        yield client
