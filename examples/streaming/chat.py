"""A bidirectional chat stream and a server-streaming feed, in one process (memory registry).

python examples/streaming/chat.py
"""

import trio

import trimicro


class Chat:
    async def Shout(self, stream: trimicro.Stream[dict, dict], ctx: trimicro.Context) -> None:
        """Bidirectional: answer every message as it arrives."""
        async for msg in stream:
            await stream.send({"text": msg["text"].upper()})

    async def Feed(self, req: dict, stream: trimicro.Stream[dict, dict], ctx: trimicro.Context) -> None:
        """Server streaming: the request comes first, then any number of responses."""
        for i in range(req["count"]):
            await stream.send({"n": i})


async def main() -> None:
    registry = trimicro.registry.MemoryRegistry()
    async with trimicro.open_service("chat", registry=registry, handlers=[Chat()]) as svc:
        client = svc.client
        async with client.stream("chat", "Chat.Shout", content_type="application/json") as stream:
            for word in ("hello", "structured", "concurrency"):
                await stream.send({"text": word})
                print("shout:", (await stream.receive())["text"])
            await stream.close_send()
        async with client.stream(
            "chat", "Chat.Feed", request={"count": 3}, content_type="application/json"
        ) as feed:
            async for item in feed:  # ends cleanly at the server's EOS
                print("feed:", item["n"])


if __name__ == "__main__":
    trio.run(main)
