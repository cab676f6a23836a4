"""The interceptor that turns `AppError` into a gRPC status with details.

Every rejection carries a `google.rpc.ErrorInfo` (reason and domain) and,
for bad input, a `google.rpc.BadRequest` naming each field, so grpcurl and
generated clients in any language can show the caller what to fix.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from backcast.errors import AppError, InvalidArgument
from backcast.rpc.undecodable import lenient, raise_if_undecodable
from backcast.telemetry import EVENT

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "backcast.dev"


def to_status(error: AppError) -> status_pb2.Status:
    """The rich `google.rpc.Status` of an application error."""
    details: list[Any] = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    ]
    if isinstance(error, InvalidArgument):
        details.append(_bad_request(error))
    if error.retryable:
        details.append(error_details_pb2.RetryInfo())
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(
        code=error.code.value[0], message=error.message, details=packed
    )


# The details travel base64-encoded in a trailer, and a client drops a call
# whose headers or trailers pass 8 KiB (grpc's default soft limit), losing
# the status: a request with hundreds of bad fields came back as
# RESOURCE_EXHAUSTED "Stream removed". So the BadRequest keeps the first
# violations that fit this budget; the message counts the others.
MAX_BAD_REQUEST_BYTES = 4_096


def _bad_request(error: InvalidArgument) -> error_details_pb2.BadRequest:
    bad_request = error_details_pb2.BadRequest()
    for v in error.violations:
        bad_request.field_violations.add(field=v.field, description=v.description)
        n_kept = len(bad_request.field_violations)
        if n_kept > 1 and bad_request.ByteSize() > MAX_BAD_REQUEST_BYTES:
            del bad_request.field_violations[-1]
            break
    return bad_request


def _internal_status() -> grpc.Status:
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message="internal error; the failure was logged on the server",
        )
    )


async def _abort_for(
    exc: BaseException, context: grpc.aio.ServicerContext, method: str
) -> None:
    if isinstance(exc, AppError):
        await context.abort_with_status(rpc_status.to_status(to_status(exc)))
    logger.error(
        "rpc handler failed",
        exc_info=exc,
        extra={EVENT: "rpc_failed", "method": method},
    )
    await context.abort_with_status(_internal_status())


class AppErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps `AppError` to its status; anything else to a logged INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        # Bytes that do not parse become INVALID_ARGUMENT, not grpc's UNKNOWN.
        streamed = bool(handler.request_streaming)
        parse = lenient(handler.request_deserializer, streamed=streamed)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            # A client stream ends in one reply, so the unary wrapper fits.
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, method),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        return handler


def _wrap_unary(behavior: Any, method: str) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            raise_if_undecodable(request)
            return await behavior(request, context)
        except (AppError, Exception) as exc:  # noqa: BLE001 - mapped to a status
            if _is_abort(exc):
                raise
            await _abort_for(exc, context, method)

    return wrapped


def _wrap_stream(behavior: Any, method: str) -> Any:
    async def wrapped(
        request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            raise_if_undecodable(request)
            async for response in behavior(request, context):
                yield response
        except (AppError, Exception) as exc:  # noqa: BLE001 - mapped to a status
            if _is_abort(exc):
                raise
            await _abort_for(exc, context, method)

    return wrapped


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises this internally; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError)
