"""Selector filters: route calls to one version or to nodes with a metadata label.

python examples/filters/filters.py
"""

import collections

import trio

import trimicro
from trimicro.selector import filter_label, filter_version


class Greeter:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def Hello(self, req: dict, ctx: trimicro.Context) -> dict:
        return {"from": self.tag}


async def main() -> None:
    registry = trimicro.registry.MemoryRegistry()
    async with trio.open_nursery() as nursery:
        for version, zone in (("1.0.0", "a"), ("2.0.0", "a"), ("2.0.0", "b")):
            svc = trimicro.Service(
                "greeter", version=version, metadata={"zone": zone}, registry=registry,
                handlers=[Greeter(f"v{version}/{zone}")], argv=[], handle_signals=False,
            )  # fmt: skip
            await nursery.start(svc.run)
        async with trimicro.open_client(registry=registry) as client:
            selector = client.selector
            assert selector is not None
            for name, filters in (
                ("version 2.0.0", [filter_version("2.0.0")]),
                ("zone b", [filter_label("zone", "b")]),
            ):
                seen: collections.Counter[str] = collections.Counter()
                for _ in range(30):
                    node = (await selector.select("greeter", filters=filters))()
                    rsp = await client.call(
                        "greeter", "Greeter.Hello", {}, content_type="application/json", address=node.address
                    )
                    seen[rsp["from"]] += 1
                print(f"{name}: {dict(seen)}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
