"""One read of a plain TCP socket, with trio's semantics and fewer of its layers.

``trio.SocketStream.receive_some`` goes through a context manager that translates errors, a method
wrapper, a helper that enters and leaves a try-sync block, and only then ``recv``: about ten Python
calls around one syscall, paid by every read of every connection (two to four per unary call on each
side). :func:`receive_tcp` is the same read in three: a cancellation check, ``os.read``, and on
``EAGAIN`` trio's own ``wait_readable``. What it keeps of trio's contract:

- it is a checkpoint: cancelled before reading; a read that succeeds at once still yields
  (``cancel_shielded_checkpoint``), so a peer that never stops sending cannot starve other tasks;
- a socket closed by another task while we wait wakes us with ``ClosedResourceError`` (trio's
  ``notify_closing`` is keyed by descriptor), and one closed before the read is ``ClosedResourceError``
  too: the socket's ``fileno()`` is checked before every ``os.read``, so a descriptor number reused
  by a file opened after the close is never read;
- an ``OSError`` from the read is ``BrokenResourceError``, as trio raises it.

What it leaves out: trio's check that two tasks do not read one stream at once. Every caller here
reads under a lock or a baton of its own.
"""

from __future__ import annotations

import errno
import os

import trio

__all__ = ["receive_tcp"]

_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


def _error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


async def receive_tcp(stream: trio.SocketStream, fd: int, max_bytes: int) -> bytes:
    """``stream.receive_some(max_bytes)`` for a plain TCP ``stream`` whose descriptor is ``fd``."""
    await trio.lowlevel.checkpoint_if_cancelled()
    sock = stream.socket
    try:
        if sock.fileno() != fd:
            raise trio.ClosedResourceError("this socket was already closed")
        data = os.read(fd, max_bytes)
    except BlockingIOError:
        pass
    except OSError as exc:
        raise _error(exc) from exc
    else:
        await trio.lowlevel.cancel_shielded_checkpoint()
        return data
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            if sock.fileno() != fd:
                raise trio.ClosedResourceError("this socket was already closed")
            return os.read(fd, max_bytes)
        except BlockingIOError:
            continue  # woken without data (a spurious wakeup): wait again
        except OSError as exc:
            raise _error(exc) from exc
