"""Render one :class:`FileModel` as the text of ``<name>_micro.py``.

The output is meant to pass ``mypy --strict`` (against the ``--pyi_out`` stubs), ``ruff check`` and
``ruff format --check`` as generated, so every line here is written the way ruff would format it.
"""

from __future__ import annotations

import json

from ._model import FileModel, GenerationError, MessageRef, MethodModel, ServiceModel
from ._names import module_name, snake_case

__all__ = ["RESERVED", "render"]

#: module-level names the generated code uses; proto methods are renamed around them.
RESERVED = frozenset(
    {"AbstractAsyncContextManager", "Any", "Coroutine", "Mapping", "Protocol", "Router", "trimicro"}
    # the generated client's own attributes
    | {"_client", "_service_name"}
)

_KIND_DOC = {
    "unary": "Call ``{ep}``.",
    "server": "Open ``{ep}``, a server stream: ``req`` goes first, then receive the responses.",
    "client": "Open ``{ep}``, a client stream: send requests, ``close_send()``, then receive the response.",
    "bidi": "Open ``{ep}``, a bidirectional stream.",
}


def _str(value: str) -> str:
    """A double-quoted Python literal (JSON escapes are valid Python escapes)."""
    return json.dumps(value, ensure_ascii=False)


def _docstring(text: str, indent: str) -> list[str]:
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    lines = body.split("\n")
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _join_doc(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


class _Names:
    def __init__(self, svc: ServiceModel) -> None:
        snake = snake_case(svc.name)
        self.client = f"{svc.name}Client"
        self.handler = f"{svc.name}Handler"
        self.methods = f"{snake.upper()}_METHODS"
        self.register = f"register_{snake}_handler"

    def all(self) -> list[str]:
        return [self.methods, self.client, self.handler, self.register]


def _stream_type(m: MethodModel) -> str:
    return f"AbstractAsyncContextManager[trimicro.ClientStream[{m.request.expr}, {m.response.expr}]]"


def _specs(svc: ServiceModel, names: _Names) -> list[str]:
    if not svc.methods:
        return [f"{names.methods}: list[trimicro.MethodSpec] = []"]
    out = [f"{names.methods}: list[trimicro.MethodSpec] = ["]
    for m in svc.methods:
        out += [
            "    trimicro.MethodSpec(",
            f"        name={_str(m.name)},",
            f"        request={m.request.expr},",
            f"        response={m.response.expr},",
            f"        client_streaming={m.client_streaming},",
            f"        server_streaming={m.server_streaming},",
            f"        attr={_str(m.attr) if m.attr != m.name else None},",
            f"        doc={_str(m.doc)},",
            "    ),",
        ]
    out.append("]")
    return out


def _client_method(svc: ServiceModel, m: MethodModel) -> list[str]:
    ep = f"{svc.name}.{m.name}"
    doc = _docstring(_join_doc(m.doc, _KIND_DOC[m.kind].format(ep=ep)), "        ")
    req = m.request.expr
    rsp = m.response.expr
    common = [
        "        timeout: float | None = None,",
        "        metadata: Mapping[str, str] | None = None,",
        "        metadata_out: trimicro.ResponseMetadata | None = None,",
    ]
    if m.kind == "unary":
        return [
            f"    def {m.attr}(",
            "        self,",
            f"        req: {req},",
            "        *,",
            *common,
            "        retries: int | None = None,",
            "        address: str | None = None,",
            "        content_type: str | None = None,",
            f"    ) -> Coroutine[Any, Any, {rsp}]:",
            *doc,
            "        return self._client.call(",
            "            self._service_name,",
            f"            {_str(ep)},",
            "            req,",
            f"            response_type={rsp},",
            "            timeout=timeout,",
            "            metadata=metadata,",
            "            metadata_out=metadata_out,",
            "            retries=retries,",
            "            address=address,",
            "            content_type=content_type,",
            "        )",
        ]
    first = [f"        req: {req},"] if m.kind == "server" else []
    return [
        f"    def {m.attr}(",
        "        self,",
        *first,
        "        *,",
        *common,
        "        address: str | None = None,",
        "        content_type: str | None = None,",
        f"    ) -> {_stream_type(m)}:",
        *doc,
        "        return self._client.stream(",
        "            self._service_name,",
        f"            {_str(ep)},",
        f"            request={'req' if m.kind == 'server' else 'None'},",
        f"            request_type={req},",
        f"            response_type={rsp},",
        "            timeout=timeout,",
        "            metadata=metadata,",
        "            metadata_out=metadata_out,",
        "            address=address,",
        "            content_type=content_type,",
        "        )",
    ]


def _client(svc: ServiceModel, names: _Names) -> list[str]:
    doc = _join_doc(
        f"Typed calls to the ``{svc.name}.*`` endpoints of ``service_name``, through ``client``.",
        svc.doc,
    )
    out = [
        f"class {names.client}:",
        *_docstring(doc, "    "),
        "",
        "    def __init__(self, service_name: str, client: trimicro.Client) -> None:",
        "        self._service_name = service_name",
        "        self._client = client",
    ]
    for m in svc.methods:
        out.append("")
        out += _client_method(svc, m)
    return out


def _handler_method(m: MethodModel) -> list[str]:
    req = m.request.expr
    rsp = m.response.expr
    stream = f"stream: trimicro.Stream[{req}, {rsp}]"
    if m.kind == "unary":
        params, ret = [f"req: {req}"], rsp
    elif m.kind == "server":
        params, ret = [f"req: {req}", stream], "None"
    else:
        params, ret = [stream], "None"
    out = [
        f"    async def {m.attr}(",
        "        self,",
        *(f"        {p}," for p in params),
        "        ctx: trimicro.Context,",
        "        /,",
        f"    ) -> {ret}:",
    ]
    hint = {
        "unary": "",
        "server": "Send each response with ``stream.send()``; returning ends the stream.",
        "client": "Receive requests until the stream ends, then ``stream.send()`` the one response.",
        "bidi": "Receive requests and send responses on ``stream``; returning ends the stream.",
    }[m.kind]
    doc = _join_doc(m.doc, hint)
    if doc:
        return out + _docstring(doc, "        ")
    out[-1] += " ..."
    return out


def _handler(svc: ServiceModel, names: _Names) -> list[str]:
    doc = _join_doc(
        f"What a ``{svc.name}`` implementation provides; register it with ``{names.register}``.",
        svc.doc,
    )
    out = [f"class {names.handler}(Protocol):", *_docstring(doc, "    ")]
    for m in svc.methods:
        out.append("")
        out += _handler_method(m)
    return out


def _register(svc: ServiceModel, names: _Names) -> list[str]:
    doc = (
        f"Register ``impl`` as handler ``{svc.name}``: endpoints ``{svc.name}.<Method>``, "
        f"gRPC ``/{svc.full_name}/<Method>``."
    )
    return [
        f"def {names.register}(",
        f"    service_or_server: trimicro.Service | Router, impl: {names.handler}",
        ") -> list[str]:",
        *_docstring(doc, "    "),
        "    return service_or_server.handle(",
        f"        impl, name={_str(svc.name)}, methods={names.methods}, grpc_service={_str(svc.full_name)}",
        "    )",
    ]


def _imports(refs: dict[str, MessageRef], relative: bool, file_module: str) -> list[str]:
    """pb2 imports, sorted as isort/ruff sort them: straight imports, then from-imports, then relative."""
    straight: list[str] = []
    froms: list[tuple[str, str]] = []
    local: list[tuple[int, str, str]] = []
    here = file_module.split(".")[:-1]
    for ref in sorted(refs.values(), key=lambda r: r.module):
        module = ref.module
        pkg, _, leaf = module.rpartition(".")
        if relative and not module.startswith("google.protobuf."):
            target = module.split(".")[:-1]
            common = 0
            while common < min(len(here), len(target)) and here[common] == target[common]:
                common += 1
            dots = "." * (len(here) - common + 1)
            rest = ".".join(target[common:])
            local.append((len(dots), f"{dots}{rest}", f"import {leaf} as {ref.alias}"))
        elif pkg:
            froms.append((pkg, f"from {pkg} import {leaf} as {ref.alias}"))
        else:
            straight.append(f"import {module} as {ref.alias}")
    out = sorted(straight, key=str.lower)
    out += [line for _, line in sorted(froms, key=lambda t: (t[0].lower(), t[1].lower()))]
    if local:
        if out:
            out.append("")
        out += [f"from {mod} {imp}" for _, mod, imp in sorted(local, key=lambda t: (-t[0], t[1], t[2]))]
    return out


def _all_order(name: str) -> tuple[int, str]:
    """ruff's RUF022 order for ``__all__``: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def render(model: FileModel, *, relative_imports: bool = False) -> str:
    """The module text; deterministic, so golden tests can compare it byte for byte."""
    refs = {
        ref.proto_file: ref for svc in model.services for m in svc.methods for ref in (m.request, m.response)
    }
    methods = [m for svc in model.services for m in svc.methods]
    streaming = any(m.kind != "unary" for m in methods)
    names = [_Names(svc) for svc in model.services]
    owners: dict[str, str] = {}
    for svc, ns in zip(model.services, names, strict=True):
        for n in ns.all():
            if n in owners:
                raise GenerationError(
                    model.proto_file, f"services {owners[n]} and {svc.name} would both define {n}; rename one"
                )
            owners[n] = svc.name
    exported = sorted(owners, key=_all_order)
    pkg = f" (package {model.package})" if model.package else ""

    texts = [svc.doc for svc in model.services] + [m.doc for m in methods]
    out: list[str] = ["# Code generated by protoc-gen-trimicro. DO NOT EDIT."]
    out.append(f"# source: {model.proto_file}")
    if any(not t.isascii() for t in texts):
        out.append("# ruff: noqa: RUF001, RUF002")
    out += [
        f'"""trimicro clients and handlers for the services of {model.proto_file}{pkg}."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    unary = any(m.kind == "unary" for m in methods)
    if methods:
        out.append(f"from collections.abc import {'Coroutine, ' if unary else ''}Mapping")
    if streaming:
        out.append("from contextlib import AbstractAsyncContextManager")
    out += [
        f"from typing import {'Any, ' if unary else ''}Protocol",
        "",
        "import trimicro",
        "from trimicro.server import Router",
        "",
    ]
    out.append("__all__ = [")
    out += [f"    {_str(n)}," for n in exported]
    out.append("]")
    pb2 = _imports(refs, relative_imports, module_name(model.proto_file))
    if pb2:
        out += ["", *pb2]
    for i, (svc, ns) in enumerate(zip(model.services, names, strict=True)):
        # isort wants one blank line between the imports and a following assignment
        out += [""] if i == 0 and pb2 else ["", ""]
        out += [*_specs(svc, ns), "", "", *_client(svc, ns), "", "", *_handler(svc, ns)]
        out += ["", "", *_register(svc, ns)]
    out.append("")
    return "\n".join(out)
