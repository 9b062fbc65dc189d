"""Which failures of a step are worth retrying, and the two errors the state machines know.

Every AWS call a step makes can fail. botocore retries what it can at the HTTP level
(5xx, throttling, dropped connections); what still reaches the step is classified here,
once, for every step:

* **transient**: throttling (``Throttling``, ``SlowDown``, ``ProvisionedThroughputExceededException``,
  any HTTP 429), the service's own faults (HTTP 5xx, ``InternalError``, ``ServiceUnavailable``),
  connections that dropped or timed out, and "another execution is sending this alert right
  now" (Powertools idempotency). The same request a little later will very likely succeed.
* **permanent**: everything else: ``AccessDenied``, ``NoSuchBucket``, validation errors, and
  unexpected exceptions (``internal_error``: a bug does not go away by waiting).
* the typed errors of :mod:`skysift.errors` say it themselves: their class's ``transient``
  (a bad file stays bad; a worker killed for memory may go through later). An
  :class:`~skysift.errors.InternalError` wraps an unexpected exception, so the exception it
  was raised from decides (a throttled read deep inside a library is retried).

A Lambda handler re-raises whatever its step raised as :class:`TransientError` or
:class:`PermanentError`: the Lambda runtime reports the class name as the error, so the state
machine has exactly two names to act on: ``TransientError`` is retried with backoff and jitter,
``PermanentError`` is caught and sent to Quarantine. The error's message is its failure record
(JSON: ``reason``, ``message``, ``error_type``, ``uri``, ``transient``, and for AWS refusals the
``operation`` and ``code``), which reaches Quarantine as the ``Cause`` kept by the Catch of the
state that failed; Quarantine reads the record, it never rebuilds an exception class from its name.
"""

from __future__ import annotations

import errno
import json
import re
from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
)
from awswrangler.exceptions import ServiceApiError
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, IncompleteReadError

from skysift.errors import InternalError, SkysiftError

#: Error codes of AWS APIs that say "not now" rather than "no".
TRANSIENT_CODES = frozenset({
    # throttling, by whatever name each service gives it
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown", "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded", "EC2ThrottledException", "KMSThrottlingException", "PriorRequestNotComplete",
    "TransactionInProgressException", "RequestTimeTooSkewed",
    # the service's own trouble
    "InternalError", "InternalFailure", "InternalServerError", "InternalServiceError", "InternalServiceException",
    "ServiceUnavailable", "ServiceUnavailableException", "ServiceFailure", "ServerException",
    "RequestTimeout", "RequestTimeoutException", "OperationTimeoutException", "ConcurrentModificationException",
    "OperationAborted",
})
#: errno values s3fs gives the OSError it raises for a 5xx or a dropped connection.
TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.EREMOTEIO, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED,
                              errno.EAGAIN, errno.EPIPE})
#: Powertools idempotency: another execution holds the alert's claim, or the record changed under us.
_IDEMPOTENCY_BUSY = (IdempotencyAlreadyInProgressError, IdempotencyInconsistentStateError)

#: Failure reasons of AWS refusals (the typed errors of :mod:`skysift.errors` bring their own).
AWS_TRANSIENT, AWS_PERMANENT = "aws_transient", "aws_error"


class StepFailure(Exception):
    """What a step handler raises; its message is the failure record as JSON."""

    transient: bool = False

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = {**record, "transient": self.transient}
        super().__init__(json.dumps(self.record, default=str))


class TransientError(StepFailure):
    """Retried by the state machine (backoff with full jitter); Quarantine when retries run out."""

    transient = True


class PermanentError(StepFailure):
    """Caught by the state machine and sent to Quarantine with its reason."""


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and those it was raised from (``__cause__``, else ``__context__``), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _client_error_record(exc: ClientError, transient: bool) -> dict[str, Any]:
    error = exc.response.get("Error", {})
    code = error.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown"))
    operation = getattr(exc, "operation_name", "unknown")
    return {"reason": AWS_TRANSIENT if transient else AWS_PERMANENT,
            "message": f"{operation}: {code}: {error.get('Message') or exc}",
            "error_type": "ClientError", "operation": operation, "code": code}


def _is_transient_client_error(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code in TRANSIENT_CODES or status == 429 or status >= 500


def _decide(exc: BaseException) -> dict[str, Any] | None:
    """The record of one link of the chain, when that link decides; None to look further in."""
    if isinstance(exc, StepFailure):
        return exc.record
    if isinstance(exc, ClientError):
        transient = _is_transient_client_error(exc)
        return {**_client_error_record(exc, transient), "transient": transient}
    if isinstance(exc, (ConnectionError, HTTPClientError, IncompleteReadError, TimeoutError, ConnectionResetError)):
        return {"reason": AWS_TRANSIENT, "message": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__,
                "transient": True}
    name = type(exc).__name__
    if isinstance(exc, _IDEMPOTENCY_BUSY):
        return {"reason": AWS_TRANSIENT, "message": f"{name}: {exc}", "error_type": name, "transient": True}
    if isinstance(exc, ServiceApiError):  # awswrangler: per-item errors of a batch call (BatchCreatePartition)
        codes = set(re.findall(r"'ErrorCode': '(\w+)'", str(exc)))
        transient = bool(codes) and codes <= TRANSIENT_CODES
        return {"reason": AWS_TRANSIENT if transient else AWS_PERMANENT, "message": str(exc)[:500],
                "error_type": name, "transient": transient}
    if isinstance(exc, InternalError):
        return None  # an unexpected exception, wrapped: what it was raised from decides
    if isinstance(exc, SkysiftError):
        return {**exc.to_record(), "transient": exc.transient}  # the class says
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return {"reason": AWS_TRANSIENT, "message": f"{name}: {exc}", "error_type": name, "transient": True}
    return None


def failure_record(exc: BaseException) -> dict[str, Any]:
    """The failure record of an exception: reason, message, error type, uri, and whether it is transient.

    The first link of the exception's chain that tells (a ClientError by its code, a dropped
    connection, a typed skysift error) decides; an exception nothing in its chain explains is a
    permanent ``internal_error``.
    """
    for link in _chain(exc):
        record = _decide(link)
        if record is not None:
            uri = getattr(exc, "uri", None) or getattr(link, "uri", None)
            return {**record, "uri": record.get("uri") or uri}
    internal = exc if isinstance(exc, InternalError) else InternalError.from_exception(exc)
    return {**internal.to_record(), "uri": internal.uri, "transient": False}


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same request later may well succeed."""
    return bool(failure_record(exc)["transient"])


def step_failure(exc: BaseException) -> StepFailure:
    """The :class:`TransientError` or :class:`PermanentError` a handler raises for ``exc``."""
    if isinstance(exc, StepFailure):
        return exc
    record = failure_record(exc)
    return TransientError(record) if record["transient"] else PermanentError(record)


def record_from_cause(cause: str | None) -> dict[str, Any] | None:
    """The failure record a :class:`StepFailure` carried, from a Catch's ``Cause`` (the Lambda error payload)."""
    try:
        payload = json.loads(cause or "")
        record = json.loads(payload.get("errorMessage", "")) if isinstance(payload, dict) else None
    except (TypeError, ValueError):
        return None
    return record if isinstance(record, dict) and "reason" in record else None


__all__ = ["AWS_PERMANENT", "AWS_TRANSIENT", "TRANSIENT_CODES", "PermanentError", "StepFailure", "TransientError",
           "failure_record", "is_transient", "record_from_cause", "step_failure"]
