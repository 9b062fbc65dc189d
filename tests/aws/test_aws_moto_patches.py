"""The moto fixes the emulation relies on, each shown on a minimal state machine.

moto 5.2.x's Step Functions interpreter fails ``batch:submitJob`` and
``batch:submitJob.sync`` with ``States.Runtime: 'JobName'``: the SFN->boto parameter
normalisation (PascalCase ``JobName`` -> botocore member ``jobName``) was stubbed out
when the interpreter was ported, and AWS Batch's rest-json serializer looks the
PascalCase name up in the shape's members. The first test pins that diagnosis (it
fails, loudly, the day moto fixes it, and the patch can go).
"""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from skysift.aws.emulation import moto_patches

CONFIG = {"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False},
          "lambda": {"use_docker": False}}
REGION = "us-east-1"


def _batch_setup() -> tuple[str, str, str]:
    """A Fargate compute environment, job queue and job definition; returns (role, queue, definition)."""
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="g", Description="g", VpcId=vpc)["GroupId"]
    batch = boto3.client("batch", region_name=REGION)
    environment = batch.create_compute_environment(
        computeEnvironmentName="skysift-ce", type="MANAGED", state="ENABLED", serviceRole=role,
        computeResources={"type": "FARGATE", "maxvCpus": 4, "subnets": [subnet], "securityGroupIds": [group]},
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(jobQueueName="skysift-queue", state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}])["jobQueueArn"]
    definition = batch.register_job_definition(
        jobDefinitionName="skysift-job", type="container", platformCapabilities=["FARGATE"],
        containerProperties={"image": "worker", "command": ["batch", "--help"], "executionRoleArn": role,
                             "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}]},
    )["jobDefinitionArn"]
    return role, queue, definition


def _run(definition: dict, role: str, document: dict | None = None) -> dict:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(name=f"m{time.monotonic_ns()}", definition=json.dumps(definition),
                                       roleArn=role)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(document or {}))["executionArn"]
    deadline = time.monotonic() + 600  # a guard against a hang, far beyond any slow machine
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return described


def _submit(resource: str, queue: str, definition: str, *command: str) -> dict:
    return {"StartAt": "Submit", "States": {"Submit": {
        "Type": "Task", "Resource": resource, "End": True,
        "Parameters": {"JobName": "skysift-large", "JobQueue": queue, "JobDefinition": definition,
                       "ContainerOverrides": {"Command": ["batch", *command],
                                              "Environment": [{"Name": "SKYSIFT_STAGE", "Value": "test"}]}},
    }}}


@pytest.mark.parametrize("resource", ["arn:aws:states:::batch:submitJob", "arn:aws:states:::batch:submitJob.sync"])
def test_unpatched_moto_fails_batch_tasks_on_the_parameter_casing(resource):
    with mock_aws(config=CONFIG):
        role, queue, definition = _batch_setup()
        execution = _run(_submit(resource, queue, definition), role)

    assert (execution["status"], execution["error"]) == ("FAILED", "States.Runtime")
    assert "'JobName'" in execution["cause"]


def test_batch_sync_task_runs_the_container_entrypoint_and_returns_the_job():
    calls = []

    def entrypoint(command: list[str], environment: dict[str, str]) -> int:
        calls.append((command, environment))
        return 0

    with mock_aws(config=CONFIG), moto_patches.service_casing(), moto_patches.batch_dispatch(entrypoint):
        role, queue, definition = _batch_setup()
        execution = _run(_submit("arn:aws:states:::batch:submitJob.sync", queue, definition, "--key", "k"), role)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    assert output["Status"] == "SUCCEEDED" and output["JobName"] == "skysift-large"
    [(command, environment)] = calls
    assert command == ["batch", "--key", "k"]
    assert environment["SKYSIFT_STAGE"] == "test"
    assert environment["MANAGED_BY_AWS"] == "STARTED_BY_STEP_FUNCTIONS"


def test_failed_batch_job_fails_the_sync_task_with_the_job_description():
    with mock_aws(config=CONFIG), moto_patches.service_casing(), moto_patches.batch_dispatch(lambda c, e: 2):
        role, queue, definition = _batch_setup()
        flow = _submit("arn:aws:states:::batch:submitJob.sync", queue, definition)
        flow["States"]["Submit"]["Catch"] = [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Caught"}]
        del flow["States"]["Submit"]["End"]
        flow["States"]["Caught"] = {"Type": "Pass", "End": True}
        execution = _run(flow, role)

    assert execution["status"] == "SUCCEEDED"
    caught = json.loads(execution["output"])["error"]
    assert caught["Error"] == "States.TaskFailed"
    assert json.loads(caught["Cause"])["StatusReason"] == "Essential container in task exited (exit code 2)"


def test_nested_sync_execution_and_unnamed_executions_work_with_the_fixes():
    with mock_aws(config=CONFIG), moto_patches.service_casing(), moto_patches.execution_names():
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        child = sfn.create_state_machine(name="child", roleArn=role, definition=json.dumps(
            {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
        parent = {"StartAt": "Each", "States": {"Each": {
            "Type": "Map", "ItemsPath": "$.items", "End": True,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Child", "States": {"Child": {
                "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2", "End": True,
                "Parameters": {"StateMachineArn": child, "Input": {"n.$": "$"}}, "OutputPath": "$.Output"}}}}}}
        execution = _run(parent, role, {"items": [1, 2, 3]})

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert json.loads(execution["output"]) == [{"n": 1}, {"n": 2}, {"n": 3}]


def _echo_state_machine() -> tuple[str, object, str]:
    """An IAM role, a Step Functions client and a one-Pass-state machine (inside mock_aws)."""
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(name="target", roleArn=role, definition=json.dumps(
        {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    return role, sfn, machine


def test_eventbridge_rule_with_a_state_machine_target_starts_an_execution():
    with mock_aws(config=CONFIG), moto_patches.eventbridge_to_stepfunctions():
        role, sfn, machine = _echo_state_machine()
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="fits", EventPattern=json.dumps(
            {"source": ["aws.s3"], "detail": {"object": {"key": [{"suffix": ".fits"}]}}}))
        events.put_targets(Rule="fits", Targets=[{"Id": "1", "Arn": machine, "RoleArn": role}])
        for key in ("a.fits", "b.txt"):
            events.put_events(Entries=[{"Source": "aws.s3", "DetailType": "Object Created",
                                        "Detail": json.dumps({"object": {"key": key}})}])
        started = sfn.list_executions(stateMachineArn=machine)["executions"]
        inputs = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in started]

    assert [i["detail"]["object"]["key"] for i in inputs] == ["a.fits"]


def test_s3_uploads_reach_only_enabled_rules():
    with mock_aws(config=CONFIG), moto_patches.eventbridge_to_stepfunctions():
        role, sfn, machine = _echo_state_machine()
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="uploads", EventPattern=json.dumps({"source": ["aws.s3"]}))
        events.put_targets(Rule="uploads", Targets=[{"Id": "1", "Arn": machine, "RoleArn": role}])
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="raw-bucket")
        s3.put_bucket_notification_configuration(Bucket="raw-bucket",
                                                 NotificationConfiguration={"EventBridgeConfiguration": {}})
        s3.put_object(Bucket="raw-bucket", Key="a.fits", Body=b"a")
        events.disable_rule(Name="uploads")
        s3.put_object(Bucket="raw-bucket", Key="b.fits", Body=b"b")
        started = sfn.list_executions(stateMachineArn=machine)["executions"]
        keys = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])["detail"]["object"]["key"]
                for e in started]

    assert keys == ["a.fits"]


def test_a_functions_invocations_run_one_at_a_time_and_different_functions_at_once():
    """One warm container per function, as on Lambda: a function's module state (Powertools' Metrics)
    is never used by two of its invocations at once; two functions still run side by side."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock, running, most = threading.Lock(), {}, {"each": 0, "all": 0}

    def dispatcher(event: dict, function_name: str) -> dict:
        with lock:
            running[function_name] = running.get(function_name, 0) + 1
            most["each"] = max(most["each"], running[function_name])
            most["all"] = max(most["all"], sum(running.values()))
        time.sleep(0.2)
        with lock:
            running[function_name] -= 1
        return {"n": event["n"]}

    with mock_aws(config=CONFIG), moto_patches.lambda_dispatch(dispatcher):
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("lambda", region_name=REGION)
        for name in ("a", "b"):
            client.create_function(FunctionName=name, Role=role, PackageType="Image",
                                   Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:1"})

        def invoke(args: tuple[str, int]) -> int:
            name, n = args
            return json.loads(client.invoke(FunctionName=name, Payload=json.dumps({"n": n}))["Payload"].read())["n"]

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(invoke, [(name, n) for n in range(3) for name in ("a", "b")]))

    assert results == [0, 0, 1, 1, 2, 2]
    assert most == {"each": 1, "all": 2}
