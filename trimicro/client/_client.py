"""The client: call, stream and publish, with discovery, retries and deadlines.

``publish`` hands an encoded message to :attr:`Client.broker` (a running Service sets its own; the
client knows only the :class:`~trimicro.broker.Broker` contract, never the service).

A call's timeout is a trio cancel scope (capped by any enclosing deadline, so nested calls inherit the
remaining time) and travels in the ``Timeout`` header. Each attempt asks the selector's Next for a node,
so a retry goes to another node; connection errors and retryable codes (408, 503 by default) are
retried with exponential backoff while time remains, each attempt under its own timeout, within a
retry budget, honouring server pushback, optionally hedged (client/_retry.py).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from .. import errors
from .._metadata import (
    ACCEPT,
    CONTENT_TYPE,
    MESSAGE_ID,
    MICRO_ENDPOINT,
    MICRO_ERROR,
    MICRO_ERROR_DETAILS,
    MICRO_ID,
    MICRO_METHOD,
    MICRO_SERVICE,
    MICRO_STREAM,
    MICRO_TOPIC,
    ROUTING_HEADERS,
    TIMEOUT,
    Deadline,
    canonical,
)
from .._util import collapse_excgroups
from ..broker import Broker, BrokerMessage
from ..codec import Codec, Frame, get_codec
from ..config import Options
from ..context import ResponseMetadata, current_metadata, remaining
from ..errors import BrokerError, CodecError, MicroError, ProtocolError, ServiceNotFound, TransportError
from ..registry import Node
from ..selector import Filter, Next, Selector
from ..stream import ClientStream, MucpStreamCore
from ..transport import Message, Transport
from ._pool import Pool
from ._retry import Retrier, attach_pushback

__all__ = [
    "CallFunc",
    "CallRequest",
    "Client",
    "ClientWrapper",
    "PublishFunc",
    "PublishWrapper",
    "StreamHook",
    "default_retry",
]

log = logging.getLogger("trimicro.client")
CLIENT_ID = "go.micro.client"

_ids = itertools.count(1)
_ID_PREFIX = os.urandom(6).hex()

#: ``publish``'s default Content-Type (Go Micro v5's client default).
PUBLISH_CONTENT_TYPE = "application/json"

# Node metadata "protocol" missing -> Go Micro speaks the rpc envelopes (wire/mucp.md).
_FALLBACK = {"application/json": "application/json-rpc", "application/protobuf": "application/proto-rpc"}


def _new_id() -> str:
    return f"{_ID_PREFIX}-{next(_ids)}"


@attrs.define(slots=True)
class CallRequest:
    """What client wrappers see and may change before the call goes out."""

    service: str
    endpoint: str
    body: Any
    response_type: Any = None
    content_type: str = "application/protobuf"
    metadata: dict[str, str] = attrs.field(factory=dict)
    timeout: float | None = None
    retries: int = 1
    address: str | None = None
    #: filled with the reply's response metadata, when the caller asked for it (``metadata_out=``)
    metadata_out: ResponseMetadata | None = None


CallFunc = Callable[[CallRequest], Awaitable[Any]]
ClientWrapper = Callable[[CallFunc], CallFunc]
#: ``(topic, message) -> None``: what a publish wrapper wraps (Go Micro's ``client.Publish``); the
#: message's header may be changed (tracing puts ``Traceparent`` there)
PublishFunc = Callable[[str, BrokerMessage], Awaitable[None]]
PublishWrapper = Callable[[PublishFunc], PublishFunc]
#: ``hook(req)`` -> an async context manager around a whole stream, from before the dial to its
#: end (an exception from the stream's block passes through it): tracing's client span. It may
#: change ``req.metadata`` on entry, which the stream's first frame carries.
StreamHook = Callable[[CallRequest], AbstractAsyncContextManager[Any]]


def default_retry(err: BaseException) -> bool:
    """Retry connection errors, timeouts that a node reported (408) and unavailable nodes (503)."""
    if isinstance(err, TransportError):
        return True
    return isinstance(err, MicroError) and err.code in (408, 503) and err.id != CLIENT_ID


@attrs.define(eq=False)
class Client:
    """Calls services found through ``selector`` over ``transport``. Share one per process/service."""

    selector: Selector | None
    transport: Transport
    options: Options = attrs.field(factory=Options)
    wrappers: list[ClientWrapper] = attrs.field(factory=list)
    retry: Callable[[BaseException], bool] = default_retry
    #: Where ``publish`` sends; a running Service sets its own (None: publishing raises BrokerError).
    broker: Broker | None = None
    publish_wrappers: list[PublishWrapper] = attrs.field(factory=list)
    #: around every stream, outermost first (:data:`StreamHook`)
    stream_hooks: list[StreamHook] = attrs.field(factory=list)
    pool: Pool = attrs.field(init=False)
    retrier: Retrier = attrs.field(init=False)
    _call_chain: CallFunc = attrs.field(init=False)
    _publish_chain: PublishFunc = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.pool = Pool(self.transport, self.options.client_pool_size, self.options.client_pool_ttl)
        self.retrier = Retrier.from_options(self.options)
        self._rebuild()

    def _rebuild(self) -> None:
        call: CallFunc = self._call
        for wrapper in reversed(self.wrappers):
            call = wrapper(call)
        self._call_chain = call
        publish: PublishFunc = self._publish
        for pwrapper in reversed(self.publish_wrappers):
            publish = pwrapper(publish)
        self._publish_chain = publish

    def wrap(self, wrapper: ClientWrapper, *, first: bool = False) -> None:
        """Add a client wrapper (outermost first, or the outermost with ``first=True``), Go Micro's
        ``client.Wrap``."""
        if first:
            self.wrappers.insert(0, wrapper)
        else:
            self.wrappers.append(wrapper)
        self._rebuild()

    def wrap_publish(self, wrapper: PublishWrapper, *, first: bool = False) -> None:
        """Add a publish wrapper ``w(next) -> publish(topic, message)`` (outermost first)."""
        if first:
            self.publish_wrappers.insert(0, wrapper)
        else:
            self.publish_wrappers.append(wrapper)
        self._rebuild()

    def wrap_stream(self, hook: StreamHook, *, first: bool = False) -> None:
        """Add a stream hook (outermost first, or the outermost with ``first=True``)."""
        if first:
            self.stream_hooks.insert(0, hook)
        else:
            self.stream_hooks.append(hook)

    async def aclose(self) -> None:
        await self.pool.aclose()

    # -- unary --
    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any,
        *,
        response_type: Any = None,
        timeout: float | None = None,
        retries: int | None = None,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        address: str | None = None,
        metadata_out: ResponseMetadata | None = None,
    ) -> Any:
        """Call ``service``'s ``endpoint`` (``Handler.Method``) and return the decoded response.

        ``metadata_out``, when given, receives the reply's response metadata: over gRPC its
        headers and trailers, over mucp the reply frame's non-routing headers (``header`` only).

        Raises :class:`MicroError` (typed, as the server sent it; 408 on timeout, 500/503 for
        connection problems after retries).
        """
        md = current_metadata()
        if metadata:
            md.update({canonical(k): str(v) for k, v in metadata.items()})
        req = CallRequest(
            service,
            endpoint,
            request,
            response_type,
            content_type or self.options.client_content_type,
            md,
            self.options.client_request_timeout if timeout is None else timeout,
            self.options.client_retries if retries is None else retries,
            address or self.options.proxy or None,
            metadata_out,
        )
        return await self._call_chain(req)

    async def _call(self, req: CallRequest) -> Any:
        timeout = remaining(req.timeout)
        if timeout is not None and timeout <= 0:
            raise errors.timeout(CLIENT_ID, "call %s.%s: deadline exceeded", req.service, req.endpoint)
        deadline = trio.current_time() + timeout if timeout is not None else math.inf
        with trio.move_on_after(math.inf if timeout is None else timeout):
            return await self._attempts(req, deadline)
        raise errors.timeout(
            CLIENT_ID, "call %s.%s: deadline exceeded (%.3fs)", req.service, req.endpoint, timeout or 0.0
        )

    async def _next(self, req: CallRequest, filters: Sequence[Filter] = ()) -> Next:
        if req.address:
            node = Node(req.address, req.address, {"protocol": "mucp"})
            return lambda: node
        if self.selector is None:
            raise errors.internal_server_error(CLIENT_ID, "no selector and no address for %s", req.service)
        try:
            return await self.selector.select(req.service, filters=filters)
        except ServiceNotFound:
            raise errors.not_found(CLIENT_ID, "service %s: not found", req.service) from None
        except errors.RegistryError as exc:
            raise errors.internal_server_error(CLIENT_ID, "service %s: %s", req.service, exc) from None

    async def _attempts(self, req: CallRequest, deadline: float) -> Any:
        """Attempts, per-attempt timeouts, retry budget, pushback and hedging: client/_retry.py."""
        return await self.retrier.run(self, req, deadline, await self._next(req))

    def stats(self) -> dict[str, Any]:
        """Retry counters (retries, throttled retries, hedges, attempt timeouts) for ``Debug.Stats``."""
        return self.retrier.stats()

    def _header(self, req: CallRequest, content_type: str, deadline: float) -> dict[str, str]:
        header = dict(req.metadata)
        header[MICRO_ID] = _new_id()
        header[MICRO_SERVICE] = req.service
        header[MICRO_ENDPOINT] = header[MICRO_METHOD] = req.endpoint
        header[CONTENT_TYPE] = header[ACCEPT] = content_type
        if deadline != math.inf:
            header[TIMEOUT] = Deadline(deadline).to_header()
        return header

    async def _call_node(self, req: CallRequest, node: Node, deadline: float) -> Any:
        content_type = req.content_type
        if "protocol" not in node.metadata and self.transport.name != "grpc":
            content_type = _FALLBACK.get(content_type, content_type)
        try:
            codec: Codec = get_codec(content_type)
        except errors.CodecError as exc:
            raise errors.bad_request(CLIENT_ID, str(exc)) from None
        seq = next(_ids)
        try:
            body = codec.encode_request(req.endpoint, seq, req.body)
        except errors.CodecError as exc:
            raise errors.bad_request(CLIENT_ID, "cannot encode request: %s", exc) from None
        msg = Message(self._header(req, content_type, deadline), body)
        reply = await self._roundtrip(node.address, msg, deadline, req.metadata_out)
        err = reply.header.get(MICRO_ERROR)
        if err:
            details = reply.header.get(MICRO_ERROR_DETAILS)
            raise attach_pushback(errors.parse(err, default_id=CLIENT_ID, details=details), reply.header)
        try:
            return codec.decode_response(reply.body, req.response_type)
        except errors.CodecError as exc:
            raise errors.internal_server_error(CLIENT_ID, "cannot decode response: %s", exc) from None

    async def _roundtrip(
        self, address: str, msg: Message, deadline: float, metadata_out: ResponseMetadata | None = None
    ) -> Message:
        """Send one frame, read one reply; a stale pooled connection is replaced once, transparently."""
        for _ in range(2):
            sock, pooled = await self.pool.get(address, timeout=_left(deadline))
            ok = False
            recorded = _record_into(sock, metadata_out)
            try:
                try:
                    try:
                        await sock.send(msg)
                    except ProtocolError as exc:
                        # Our own request cannot be put on the wire (a control character in the
                        # endpoint, say): the caller's mistake, not the node's. 400, no retry,
                        # and the node is not marked bad.
                        raise errors.bad_request(CLIENT_ID, "cannot send request: %s", exc) from None
                    reply = await sock.receive()
                except trio.EndOfChannel:
                    if pooled:
                        continue  # the server closed an idle connection before reading our frame
                    raise TransportError(f"{address}: connection closed before reply") from None
                except TransportError:
                    if pooled:
                        continue
                    raise
                except ProtocolError as exc:
                    raise TransportError(f"{address}: {exc}") from None
                ok = True
                if metadata_out is not None and not recorded:
                    metadata_out.header.update(
                        {k: v for k, v in reply.header.items() if k not in ROUTING_HEADERS}
                    )
                return reply
            finally:
                if recorded:
                    _record_into(sock, None)
                if ok:
                    await self.pool.put(address, sock)
                else:
                    await self.pool.discard(sock)
        raise TransportError(f"{address}: connection lost")

    # -- pub/sub --
    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish ``message`` on ``topic`` through :attr:`broker`.

        Headers, as Go Micro's ``client.Publish`` sets them: the caller's context metadata
        (:func:`trimicro.metadata` / a handler's incoming metadata), then ``metadata=``, then
        ``Content-Type``, ``Micro-Topic`` and ``Micro-ID`` (a fresh UUID; Go spells it with a capital
        ``ID`` inside broker messages). The body is encoded by the codec for ``content_type``, default
        ``application/json`` (Go Micro v5's client default, and what a Go subscriber decodes into any
        type); protobuf messages encode with either. A :class:`~trimicro.codec.Frame` is sent as its
        raw bytes. CodecError if the message cannot be encoded; BrokerError if there is no broker or
        it refused the message.
        """
        if not topic:
            raise BrokerError("publish: empty topic")
        broker = self.broker
        if broker is None:
            raise BrokerError("this client has no broker: publish from a running Service (service.client)")
        ct = content_type or PUBLISH_CONTENT_TYPE
        if isinstance(message, Frame):
            body = message.data
        elif isinstance(message, bytes | bytearray) and ct == "application/octet-stream":
            body = bytes(message)
        else:
            try:
                body = get_codec(ct).encode(message)
            except CodecError:
                raise
            except Exception as exc:  # a codec meeting a type it cannot handle
                raise CodecError(
                    f"publish {topic!r}: cannot encode {type(message).__name__} as {ct}: {exc}"
                ) from exc
        header = current_metadata()
        if metadata:
            header.update({canonical(k): str(v) for k, v in metadata.items()})
        header[CONTENT_TYPE] = ct
        header[MICRO_TOPIC] = topic
        header[MESSAGE_ID] = str(uuid.uuid4())
        header.pop(MICRO_ID, None)
        await self._publish_chain(topic, BrokerMessage(header, body))

    async def _publish(self, topic: str, message: BrokerMessage) -> None:
        broker = self.broker
        if broker is None:
            raise BrokerError("this client has no broker: publish from a running Service (service.client)")
        await broker.publish(topic, message)

    # -- streams --
    @asynccontextmanager
    async def stream(
        self,
        service: str,
        endpoint: str,
        *,
        request: Any = None,
        request_type: Any = None,
        response_type: Any = None,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        address: str | None = None,
        buffer: int = 64,
        metadata_out: ResponseMetadata | None = None,
    ) -> AsyncIterator[ClientStream[Any, Any]]:
        """Open a stream to ``endpoint``: ``async with client.stream(...) as s: await s.send(x)``.

        ``request`` (server-streaming) is sent as the first message (over gRPC, the request side
        is then closed: a server stream has exactly one request). Leaving the block, normally or
        not, cancels the remote side if it is still running and closes the connection.
        ``metadata_out`` (gRPC only) receives the response headers when the first response
        arrives and the trailers when the stream ends.
        """
        md = current_metadata()
        if metadata:
            md.update({canonical(k): str(v) for k, v in metadata.items()})
        req = CallRequest(
            service, endpoint, request, response_type,
            content_type or self.options.client_content_type, md, timeout, 0, address or self.options.proxy or None,
        )  # fmt: skip
        left = remaining(timeout)
        deadline = trio.current_time() + left if left is not None else math.inf
        if self.stream_hooks:
            async with AsyncExitStack() as hooks:
                for hook in self.stream_hooks:
                    await hooks.enter_async_context(hook(req))
                async with self._stream(req, request, request_type, deadline, buffer, metadata_out) as s:
                    yield s
        else:
            async with self._stream(req, request, request_type, deadline, buffer, metadata_out) as s:
                yield s

    @asynccontextmanager
    async def _stream(
        self,
        req: CallRequest,
        request: Any,
        request_type: Any,
        deadline: float,
        buffer: int,
        metadata_out: ResponseMetadata | None,
    ) -> AsyncIterator[ClientStream[Any, Any]]:
        service, endpoint, response_type = req.service, req.endpoint, req.response_type
        codec = get_codec(req.content_type)
        next_node = await self._next(req)
        node = next_node()
        try:
            sock = await self.transport.dial(node.address, timeout=_left(deadline))
        except TransportError as exc:
            if trio.current_time() >= deadline:
                # Our deadline ran out while connecting (a 1 ms timeout, say): a timeout, as for a
                # unary call, and not the node's fault.
                raise errors.timeout(
                    CLIENT_ID, "stream %s.%s: deadline exceeded while connecting", service, endpoint
                ) from exc
            if self.selector is not None and not req.address:
                self.selector.mark(service, node, exc)
            raise errors.internal_server_error(CLIENT_ID, "%s", exc) from exc
        if self.selector is not None and not req.address:
            self.selector.mark(service, node, None)  # connected: the node is up (and not held in flight)
        _record_into(sock, metadata_out)
        header = self._header(req, req.content_type, deadline)
        header[MICRO_STREAM] = header[MICRO_ID]
        core: MucpStreamCore[Any, Any] = MucpStreamCore(
            sock, codec, response_type, header, error_id=CLIENT_ID, buffer=buffer
        )
        try:
            with collapse_excgroups():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(core.reader)
                    nursery.start_soon(core.writer)
                    # The first frame routes the stream; Go Micro's server discards its body.
                    await sock.send(Message(dict(header), _empty_body(codec, request_type)))
                    stream: ClientStream[Any, Any] = ClientStream(core)
                    if request is not None:
                        await stream.send(request)
                        if self.transport.name == "grpc":
                            # A server stream has exactly one request: half-close (END_STREAM), as
                            # gRPC requires; grpc-go's server waits for it before answering. Not
                            # over mucp, where Go Micro has no half-close (CloseSend is unimplemented).
                            await stream.close_send()
                    with trio.move_on_at(deadline) as scope:
                        yield stream
                    nursery.cancel_scope.cancel()
            if scope.cancelled_caught:
                raise errors.timeout(CLIENT_ID, "stream %s.%s: deadline exceeded", service, endpoint)
        finally:
            core.abort()
            with trio.CancelScope(shield=True):
                await sock.aclose()


def _record_into(sock: Any, out: ResponseMetadata | None) -> bool:
    """Have a socket that can tell headers from trailers (gRPC's) fill ``out``; False if it cannot."""
    if not hasattr(sock, "metadata_out"):
        return False
    sock.metadata_out = out
    return out is not None


def _left(deadline: float) -> float | None:
    return None if deadline == math.inf else max(deadline - trio.current_time(), 0.0)


def _empty_body(codec: Codec, request_type: Any) -> bytes:
    try:
        return codec.encode(request_type() if isinstance(request_type, type) else {})
    except Exception:
        return b""
