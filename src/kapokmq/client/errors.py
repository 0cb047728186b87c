"""Exceptions raised by the client, one class per thing a caller may want to handle."""

from __future__ import annotations


class KapokMQError(Exception):
    """Base class of every error raised by kapokmq.client."""


class AuthenticationError(KapokMQError):
    """The broker rejected the secret key.

    Fatal: retrying with the same key cannot succeed, so clients never reconnect after it.
    """


class ProtocolError(KapokMQError):
    """The broker sent something the wire contract does not allow at this point."""


class SendError(KapokMQError):
    """The broker answered one producer frame with `error: ...` instead of `ok`.

    Only that message failed; the connection and the other messages in flight are unaffected.
    """

    def __init__(self, reply: str) -> None:
        self.reply = reply
        reason = reply[len("error:") :].strip() if reply.startswith("error:") else reply
        self.reason = reason
        super().__init__(f"broker rejected the message: {reason}")


class ConnectionLostError(KapokMQError):
    """The connection dropped and was not (or could not be) re-established."""


class ClientClosedError(KapokMQError):
    """The client was used after `close()`."""


class ApiError(KapokMQError):
    """The HTTP API answered `{"code": -1, ...}`; `msg` holds the broker's reason."""

    def __init__(self, msg: str, response: object = None) -> None:
        self.msg = msg
        self.response = response
        super().__init__(msg)


class ApiKeyError(AuthenticationError, ApiError):
    """The HTTP API answered `Secret key matching error`: fatal like any wrong key, and
    still the ApiError of that answer for callers that catch ApiError."""


def failure_reason(exc: BaseException, timeout: float) -> str:
    """A network failure in words; a timeout's own text is empty, so name the bound."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(exc) or type(exc).__name__
