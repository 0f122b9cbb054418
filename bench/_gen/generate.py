"""Regenerate the gRPC stubs the benchmark uses: ``python -m bench._gen.generate``.

grpc_tools writes ``greeter_pb2_grpc.py`` importing ``greeter_pb2``; we point it at the shared
``tests.protos.greeter_pb2`` so every process registers ``greeter.proto`` exactly once.
"""

from __future__ import annotations

import pathlib
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = pathlib.Path(__file__).resolve().parent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(
            ["protoc", f"-I{ROOT / 'tests' / 'protos'}", f"--grpc_python_out={tmp}", "greeter.proto"]
        )
        if rc:
            raise SystemExit(f"protoc failed ({rc})")
        text = (pathlib.Path(tmp) / "greeter_pb2_grpc.py").read_text()
    text = text.replace(
        "import greeter_pb2 as greeter__pb2", "from tests.protos import greeter_pb2 as greeter__pb2"
    )
    (OUT / "greeter_pb2_grpc.py").write_text(text)


if __name__ == "__main__":
    main()
