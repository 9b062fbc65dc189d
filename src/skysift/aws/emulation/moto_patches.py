"""Small, scoped fixes to moto 5.2.x that let the real ASL run on moto's interpreter.

Why each one exists:

* **Batch and Step Functions request/response casing.** Step Functions' optimised integrations take
  parameters in PascalCase (``JobName``, ``JobQueue``) and return PascalCase
  (``JobId``). moto's Step Functions interpreter is a port of LocalStack's, whose base
  ``StateTaskService._normalise_parameters`` / ``_normalise_response`` map those names
  onto the botocore shape (``jobName`` / ``jobId``) through the service model. moto
  replaced both with ``pass``; services whose API members are PascalCase anyway
  (Lambda, SNS, SQS, S3) do not notice, but AWS Batch is a rest-json API with
  camelCase members, so botocore's rest serializer (run with
  ``parameter_validation=False``) looks up ``shape_members['JobName']`` and raises
  ``KeyError('JobName')``, which the interpreter reports as
  ``States.Runtime: 'JobName'``. The ``.sync`` pattern would fail next on
  ``submission_output['JobId']``. The nested-workflow integration
  (``states:startExecution.sync:2``, JSON protocol with camelCase members) fails the
  same way with ``States.Runtime: 'StateMachineArn'``. :func:`service_casing` restores
  the normalisation for these two integrations only, from botocore's own service model.
  The ``aws-sdk:*`` integration keeps botocore's response as is, so ``s3:getObject``'s
  ``Body`` reaches the state as a stream and ``States.StringToJson($.Body)`` fails; its
  response normalisation is restored too (streams become strings, as Step Functions returns them).
  Its errors are named ``<Service>.<Exception>`` from a table of service names that lacks S3, so
  an S3 failure was ``s3.s3Exception`` and a Retry on ``S3.S3Exception`` (the name Step Functions
  gives it) never matched: S3 is added to the table.
* **EventBridge targets that are state machines.** moto's ``Rule.send_to_targets``
  delivers to SQS, logs and buses, and raises ``NotImplementedError`` for other
  target ARNs (S3's EventBridge notifier swallows it). :func:`eventbridge_to_stepfunctions`
  adds ``arn:aws:states:...:stateMachine:...`` targets: StartExecution with the event
  (after the target's InputPath / InputTransformer) as input, as EventBridge does. It
  also honours a rule's state: S3's notifier calls DISABLED rules too.
* **Unnamed executions.** ``StartExecution`` without a name gets a UUID on AWS; moto's
  interpreting backend names it ``None``, so the second unnamed execution of a state
  machine (every ``startExecution.sync:2`` child of a Distributed Map) fails with
  ``ExecutionAlreadyExists``. :func:`execution_names` gives unnamed executions a UUID.
* **Lambda and Batch workloads.** Without Docker, moto's "simple" Lambda backend
  echoes the payload and the simple Batch backend marks every job SUCCEEDED.
  :func:`lambda_dispatch` and :func:`batch_dispatch` run our own handlers and container
  entrypoint in-process instead, with the payload / command / environment the service
  would pass them, and report errors the way the services do (``FunctionError`` with
  ``errorType``; a FAILED job with an exit code). The job's command gets its parameters
  substituted (``Ref::NAME``), as Batch does, and the job definition's ``RetryStrategy``
  (attempts, ``EvaluateOnExit``) runs a failed container again, as Batch does and moto does not.
  A handler that raises :class:`SandboxCrash` dies as a Lambda sandbox does (killed, out of
  memory): the invocation fails with ``Runtime.ExitError`` and nothing in the handler (Powertools
  included) gets to clean up.
* **One invocation per container.** Lambda runs one invocation at a time in an execution
  environment; a function's module-level state (its clients, Powertools' ``Metrics``, whose metric
  set is a class attribute) is never used by two invocations at once. moto's Step Functions
  interpreter and the Lambda API serve requests in threads of this one process, so without care
  two invocations of a function would run in the same module at once: ``flush_metrics`` iterating
  the metric set while another invocation added to it raised ``RuntimeError: dictionary changed
  size during iteration`` (a race that cannot happen on Lambda). :func:`lambda_dispatch` gives each
  function one warm container: its invocations run one after another (the others wait, as they
  would for a function with reserved concurrency 1); different functions still run at once, each
  with state of its own (:mod:`skysift.aws.handlers`).
* **SNS FIFO deduplication.** moto hands a FIFO topic's ``MessageDeduplicationId`` on to SQS FIFO
  queues but does not deduplicate at the topic, as SNS does for five minutes: a publish whose
  response was lost and that was sent again reached every subscriber twice.
  :func:`sns_fifo_deduplication` drops a FIFO topic's message whose deduplication id it has seen
  in the last five minutes (returning the first message's id).

Every patch is a context manager: nothing changes outside the emulation.

Known limits of moto 5.2.5 that are *not* patched (the system does not depend on them):
a Distributed Map's ``ToleratedFailurePercentage`` is parsed but not enforced (failed
items never fail the Map); its ``ResultWriter`` writes a manifest with empty result
lists (SurveyIngest's report is built from each image's outcome object instead); Athena
returns canned results instead of running SQL.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import boto3
from botocore.model import OperationModel
from botocore.session import get_session

__all__ = [
    "SNS_DEDUPLICATION_S",
    "BatchDispatcher",
    "Containers",
    "LambdaDispatcher",
    "SandboxCrash",
    "all_patches",
    "batch_dispatch",
    "eventbridge_to_stepfunctions",
    "execution_names",
    "lambda_dispatch",
    "service_casing",
    "sns_fifo_deduplication",
    "too_many_requests",
]

log = logging.getLogger(__name__)

#: ``handler(event, function_name) -> result``; raising marks the invocation failed.
LambdaDispatcher = Callable[[dict[str, Any], str], Any]
#: ``entrypoint(command, environment) -> exit code`` of the container's main process.
BatchDispatcher = Callable[[list[str], dict[str, str]], int]


@functools.cache
def _operation_model(service: str, snake_action: str) -> OperationModel:
    model = get_session().get_service_model(service)
    names = {_snake(name): name for name in model.operation_names}
    return model.operation_model(names[snake_action])


def _snake(name: str) -> str:
    from moto.stepfunctions.parser.utils import camel_to_snake_case

    return camel_to_snake_case(name)


@contextmanager
def service_casing() -> Iterator[None]:
    """Restore SFN->boto parameter and boto->SFN response casing for ``batch:*`` and ``states:*`` tasks.

    Also the response side of ``aws-sdk:*`` tasks, so a streamed member (``s3:getObject``'s ``Body``)
    reaches the state as a string, as on AWS.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    def normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
        op = _operation_model(self._get_boto_service_name(boto_service_name),
                              self._get_boto_service_action(service_action_name))
        if op.input_shape is not None:
            self._to_boto_request(parameters, op.input_shape)

    def normalise_response(self, response, boto_service_name=None, service_action_name=None):
        op = _operation_model(self._get_boto_service_name(boto_service_name),
                              self._get_boto_service_action(service_action_name))
        if op.output_shape is not None:
            self._from_boto_response(response, op.output_shape)

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk,
    )

    # aws-sdk errors: "S3.S3Exception", "S3.NoSuchKeyException", as Step Functions names them.
    # StateTaskServiceSfn's own _normalise_parameters (Input to a JSON string) calls the base one.
    # aws-sdk responses: streamed members (s3:getObject's Body) become strings, as Step Functions returns them.
    with mock.patch.dict(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, {"s3": "S3"}), \
            mock.patch.object(StateTaskServiceBatch, "_normalise_parameters", normalise_parameters), \
            mock.patch.object(StateTaskServiceAwsSdk, "_normalise_response", normalise_response), \
            mock.patch.object(StateTaskServiceBatch, "_normalise_response", normalise_response), \
            mock.patch.object(StateTaskServiceSfn, "_normalise_response", normalise_response), \
            mock.patch.object(StateTaskService, "_normalise_parameters", _only_for(
                (StateTaskServiceSfn,), normalise_parameters, StateTaskService._normalise_parameters)):
        yield


def _only_for(classes, patched, original):
    def normalise(self, *args, **kwargs):
        chosen = patched if isinstance(self, classes) else original
        return chosen(self, *args, **kwargs)

    return normalise


@contextmanager
def execution_names() -> Iterator[None]:
    """Unnamed executions get a UUID name, as on AWS."""
    import uuid

    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(self, state_machine_arn, name=None, execution_input=None, trace_header=None):
        return original(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

    with mock.patch.object(StepFunctionsParserBackend, "start_execution", start_execution):
        yield


def _target_input(target: dict[str, Any], event: dict[str, Any]) -> str:
    """The input EventBridge gives a target: Input, InputPath, InputTransformer or the event."""
    from moto.events.models import EventTemplateParser

    if "Input" in target:
        return target["Input"]
    if "InputPath" in target:
        from jsonpath_ng import parse  # moto[all] dependency

        matches = [m.value for m in parse(target["InputPath"]).find(event)]
        return json.dumps(matches[0] if matches else None)
    transformer = target.get("InputTransformer")
    if transformer:
        result = EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
        return result if isinstance(result, str) else json.dumps(result)
    return json.dumps(event)


@contextmanager
def eventbridge_to_stepfunctions() -> Iterator[None]:
    """Let EventBridge rules start Step Functions executions (target ARN ``arn:...:states:...``)."""
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    original = Rule.send_to_targets

    def send_to_targets(self, original_event, transform_input=True):
        # S3's EventBridge notifier calls every rule, also DISABLED ones: a disabled rule delivers nothing.
        if self.state != "ENABLED" or not self.event_pattern.matches_event(original_event):
            return
        others = []
        for target in self.targets:
            arn = parse_arn(target["Arn"])
            if arn.service != "states":
                others.append(target)
                continue
            client = boto3.client("stepfunctions", region_name=arn.region)
            client.start_execution(stateMachineArn=target["Arn"],
                                   input=_target_input(target, dict(original_event)))
        if others:
            saved, self.targets = self.targets, others
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved

    with mock.patch.object(Rule, "send_to_targets", send_to_targets):
        yield


def too_many_requests(function_name: str):
    """The error the Lambda service answers a throttled Invoke with (HTTP 429); raise it from a dispatcher."""
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError("TooManyRequestsException", f"Rate exceeded for function {function_name}")
    error.code = 429
    return error


class SandboxCrash(BaseException):
    """Raise from inside a dispatched handler to kill its Lambda sandbox (tests: a crash at that exact point)."""


#: SNS FIFO topics drop a message whose deduplication id they saw within this many seconds.
SNS_DEDUPLICATION_S = 300


def _error_payload(exc: BaseException) -> dict[str, Any]:
    """What the Lambda Python runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class Containers:
    """One warm execution environment per function: a lock its invocations take in turn."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def of(self, function_name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(function_name, threading.Lock())


@contextmanager
def lambda_dispatch(dispatcher: LambdaDispatcher) -> Iterator[None]:
    """Run Lambda invocations (API and Step Functions tasks) through ``dispatcher`` in-process,
    one at a time per function (one container each)."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.exceptions import JsonRESTError

    containers = Containers()

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        fn = self.get_function(function_name, qualifier)
        try:
            event = json.loads(body) if body else {}
            with containers.of(fn.function_name):
                result = dispatcher(event, fn.function_name)
        except JsonRESTError:  # the Lambda service itself refused (e.g. throttled): an API error, not a FunctionError
            raise
        except SandboxCrash as exc:  # the process died: what the Lambda service reports for that
            log.info("lambda %s: sandbox crashed (%s)", fn.function_name, exc)
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "Runtime.ExitError",
                               "errorMessage": f"RequestId: emulated Error: Runtime exited with error: {exc}"}).encode()
        except Exception as exc:  # the runtime turns any exception into a FunctionError
            log.info("lambda %s raised %s: %s", fn.function_name, type(exc).__name__, exc)
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(_error_payload(exc)).encode()
        return json.dumps(result).encode()

    with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
        yield


@contextmanager
def batch_dispatch(dispatcher: BatchDispatcher) -> Iterator[None]:
    """Run submitted Batch container jobs through ``dispatcher`` in a worker thread.

    ``SubmitJob`` returns at once (status RUNNING); the job turns SUCCEEDED or FAILED
    with the entrypoint's exit code when it returns, as ``DescribeJobs`` then shows.
    """
    import datetime

    from moto.batch_simple.models import BatchSimpleBackend

    def attempt(job, command: list[str], environment: dict[str, str]) -> int:
        try:
            return int(dispatcher(command, environment))
        except Exception:
            log.exception("batch job %s crashed", job.job_id)
            return 1

    def run(job) -> None:
        # Batch substitutes the job's parameters (job definition defaults + SubmitJob's) into Ref::NAME
        command = job._add_parameters_to_command(list(job._get_container_property("command", [])))
        environment = {e["name"]: e["value"] for e in job._get_container_property("environment", [])}
        strategy = job.job_definition.retry_strategy or {}
        for tries_left in range(int(strategy.get("attempts", 1)) - 1, -1, -1):
            code = attempt(job, command, environment)
            if not code or not tries_left or not _retried(strategy, code):
                break
            log.info("batch job %s exited %d: retried (RetryStrategy)", job.job_id, code)
            job.job_stopped_at = datetime.datetime.now()  # the attempt that failed, as DescribeJobs lists it
            job._stop_attempt()
            job.latest_attempt["container"]["exitCode"] = code
            job.job_started_at = datetime.datetime.now()
            job._start_attempt()
        job.exit_code = code
        if code:
            job.job_stopped_reason = f"Essential container in task exited (exit code {code})"
        job._mark_stopped(success=code == 0)

    def mark_job_as_finished(self, include_start_attempt, job) -> None:
        self.backend._jobs[job.job_id] = job
        job.job_started_at = datetime.datetime.now()
        job.log_stream_name = job._stream_name
        if include_start_attempt:
            job._start_attempt()
        job.status = "RUNNING"
        threading.Thread(target=run, args=(job,), name=f"batch-{job.job_id}", daemon=True).start()

    with mock.patch.object(BatchSimpleBackend, "_mark_job_as_finished", mark_job_as_finished):
        yield


def _retried(strategy: dict[str, Any], exit_code: int) -> bool:
    """Batch's reading of ``evaluateOnExit``: the first rule matching the exit decides; none matching: retry."""
    reason = f"Essential container in task exited (exit code {exit_code})"
    for rule in strategy.get("evaluateOnExit", []):
        if all(fnmatch.fnmatchcase(value, rule.get(name, "*")) for name, value in
               (("onExitCode", str(exit_code)), ("onReason", reason), ("onStatusReason", reason))):
            return str(rule.get("action", "")).upper() == "RETRY"
    return True


@contextmanager
def sns_fifo_deduplication() -> Iterator[None]:
    """FIFO topics deliver a message once per deduplication id within five minutes, as SNS does."""
    from moto.sns.models import Topic

    original = Topic.publish
    seen: dict[tuple[str, str], tuple[str, float]] = {}
    lock = threading.Lock()

    def publish(self, message, subject=None, message_attributes=None, group_id=None, deduplication_id=None,
                message_structure=None):
        def deliver() -> str:
            return original(self, message, subject=subject, message_attributes=message_attributes, group_id=group_id,
                            deduplication_id=deduplication_id, message_structure=message_structure)

        if not self.fifo_topic:
            return deliver()
        key = (self.arn, deduplication_id or hashlib.sha256(message.encode()).hexdigest())
        with lock:
            now = time.monotonic()
            first = seen.get(key)
            if first is not None and now - first[1] < SNS_DEDUPLICATION_S:
                return first[0]
            message_id = deliver()
            seen[key] = (message_id, now)
            return message_id

    with mock.patch.object(Topic, "publish", publish):
        yield


@contextmanager
def all_patches(lambda_dispatcher: LambdaDispatcher, batch_dispatcher: BatchDispatcher) -> Iterator[None]:
    """Every patch above, for the duration of one emulation."""
    with ExitStack() as stack:
        stack.enter_context(service_casing())
        stack.enter_context(execution_names())
        stack.enter_context(eventbridge_to_stepfunctions())
        stack.enter_context(lambda_dispatch(lambda_dispatcher))
        stack.enter_context(batch_dispatch(batch_dispatcher))
        stack.enter_context(sns_fifo_deduplication())
        yield
