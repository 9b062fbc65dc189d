"""The one Powertools Lambda handler shape of every step function of the state machines.

Each ``functions/*/app.py`` is a handler whose signature shows its event model and its result::

    @lambda_handler(metric="ImagesMeasured")
    def handler(event: IngestState, ctx: Context) -> DetectResult:
        return detect_step(event, ctx)

:func:`lambda_handler` makes it the function Lambda calls with ``(event, context)``:

* **the event is validated at the edge**: the Powertools parser checks the raw event against the
  model of the handler's first parameter; an event that does not fit is
  :class:`~skysift.errors.MalformedEvent` (permanent) and the step never runs;
* **clients once per container**: the step's :class:`~skysift.aws.steps.Context` (boto3 clients,
  catalog store, publisher, settings) is built at the first invocation and kept, one per function;
* **a metric only on success**: ``metric`` is counted (and flushed, as EMF) only when the step
  returned; a failed invocation counts nothing of ours (Lambda's ``Errors`` and Step Functions'
  ``ExecutionsFailed`` count it);
* **the error names the state machines know**: whatever the step raises leaves as
  ``TransientError`` (retried) or ``PermanentError`` (caught, to Quarantine), its failure record
  as the message (:func:`skysift.aws.faults.step_failure`);
* structured logs with the Lambda context, an X-Ray trace of the invocation.

Each function has a metric set of its own (Powertools ``EphemeralMetrics``): on Lambda a function
has its process to itself anyway; where several share one (the emulation) their metrics stay apart.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from skysift.aws.faults import step_failure
from skysift.aws.steps import Context, context_from_env, parse_event

EventT = TypeVar("EventT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=BaseModel)

#: What a ``functions/*/app.py`` defines: its event model in, its result model out.
StepHandler = Callable[[EventT, Context], ResultT]
#: What Lambda calls.
LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def event_model(function: Callable[..., Any]) -> type[BaseModel]:
    """The model of a handler's event: the annotation of its first parameter (as Powertools'
    ``event_parser`` reads it)."""
    first = next(iter(inspect.signature(function).parameters))
    model = typing.get_type_hints(function).get(first)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{function.__qualname__}: annotate its event parameter {first!r} with a pydantic model")
    return model


#: Where the functions' JSON logs go, innermost last: empty is the process's own stdout (Lambda's,
#: on AWS); the emulator pushes its log file (:func:`log_stream`).
_LOG_STREAM: list[TextIO] = []


@contextlib.contextmanager
def log_stream(stream: TextIO) -> Iterator[None]:
    """Send the functions' JSON logs to ``stream`` while inside (the emulator's log file)."""
    _LOG_STREAM.append(stream)
    try:
        yield
    finally:
        _LOG_STREAM.pop()


class _FunctionStdout:
    """The stream Powertools' logger writes to, looked up at each line: the process's own stdout
    (``sys.__stdout__``, Lambda's), or the emulator's log file.

    Powertools keeps the stream it was created with, and its handler also serves the
    ``skysift.*`` library loggers; bound to whatever ``sys.stdout`` a test runner or a command
    had swapped in at import time, later log lines went to a closed file or into a command's
    own output.
    """

    @staticmethod
    def _now() -> TextIO:
        return _LOG_STREAM[-1] if _LOG_STREAM else sys.__stdout__

    def write(self, text: str) -> int:
        return self._now().write(text)

    def flush(self) -> None:
        self._now().flush()


def lambda_handler(*, metric: str) -> Callable[[StepHandler], LambdaHandler]:
    """Make ``handler(event: Model, ctx: Context) -> Result`` the Lambda handler of a function
    that counts ``metric`` each time it succeeds."""

    def decorate(function: StepHandler) -> LambdaHandler:
        model = event_model(function)
        name = f"{function.__module__}.{function.__qualname__}"
        logger, tracer, metrics = Logger(stream=_FunctionStdout()), Tracer(), EphemeralMetrics()

        @logger.inject_lambda_context
        @tracer.capture_lambda_handler
        @functools.wraps(function, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
        def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            try:
                request = parse_event(event, model)
                ctx = context_from_env(name)
                ctx.register_lambda_context(context)  # alert claims expire with this invocation
                result = function(request, ctx)
            except Exception as exc:
                failure = step_failure(exc)
                logger.warning("step failed", extra={"failure": failure.record})
                if failure is exc:
                    raise
                raise failure from exc
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
            metrics.flush_metrics()
            return result.model_dump(mode="json")

        handler.event_model = model  # type: ignore[attr-defined]  # for tests and tools
        return handler

    return decorate


__all__ = ["LambdaHandler", "StepHandler", "event_model", "lambda_handler"]
