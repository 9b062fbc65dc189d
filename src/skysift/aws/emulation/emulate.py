"""The whole AWS system on moto: what ``template.yaml`` declares, running in this process.

:class:`Emulation` stands up, on a moto server (a real HTTP endpoint, so boto3, s3fs
and awswrangler all talk to it the way they talk to AWS), the resources of
``template.yaml`` with their names resolved from the template: the raw and catalog
buckets (EventBridge notifications on), the Glue database and tables, the Athena
workgroup, the alert topic and ledger, the functions, the Batch queue and job
definition, the alarms, and the state machines created from the real
``statemachine/*.asl.json`` with the template's DefinitionSubstitutions. The
EventBridge rule of the template routes uploads to ``IngestImage``.

moto's Step Functions interpreter runs the executions; Lambda tasks are dispatched
in-process to ``functions/*/app.py`` and Batch jobs to the worker container's
entrypoints (:mod:`skysift.aws.worker`; :mod:`skysift.aws.timelag_job` for ``TimeLagAnalysis``);
see :mod:`skysift.aws.emulation.moto_patches` for the few fixes that needs. The one deliberate difference from a deployment: retry intervals
are shortened (moto sleeps them for real), in the loaded definition, never in the file. Handlers see a
Lambda context whose deadline is the function's ``Timeout`` (or ``lambda_timeout_s``, which tests shorten:
an alert claim left by a crashed invocation expires at that deadline, and the tests do not wait minutes).
A survey's ``SurveyMaxConcurrency`` defaults to what the emulated account can run
(:data:`SURVEY_CHILDREN_PER_SLOT` per handler slot), as a deployment sizes it to its account's Lambda
concurrency; pass the parameter to run the template's own value.

For fault injection, :meth:`MotoServer.intercept` routes every request the server receives through a
WSGI middleware (an HTTP-level fault: a 503 ``SlowDown`` botocore retries, a response lost after the
request was served), and a handler that raises :class:`~skysift.aws.emulation.moto_patches.SandboxCrash` dies
as a Lambda sandbox does (``Runtime.ExitError``, its ``finally`` clauses unrun by Powertools).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from skysift.aws.emulation import moto_patches
from skysift.aws.template import (
    Resolver,
    check_parameters,
    load_template,
    parameter_defaults,
    resources_of_type,
)
from skysift.errors import ConfigError

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ROLE_NAME = "skysift-emulated"
FAST_RETRY = {"IntervalSeconds": 1, "BackoffRate": 1.0}
#: Lambda handlers and Batch jobs that run at once. On AWS each has a sandbox and memory of its
#: own; here all share this process, so the rest wait their turn: a burst of uploads then costs
#: the memory of this many images at a time (SEP holds the GIL, so more would not be faster).
CONCURRENCY = 2
#: Children of a survey's Distributed Map per handler slot, when ``SurveyMaxConcurrency`` is not given.
#: On AWS every child has Lambdas of its own; here the children share :data:`CONCURRENCY` slots, and
#: the time a state waits for one counts against its ``TimeoutSeconds``. With the template's 40
#: children behind 2 slots, a slowed machine quarantined 5-15 of 47 good images "after InspectImage:
#: timeout" (a state that reads one header waited out its 120 s); two children per slot keep
#: both slots busy with a wait of a few handler calls.
SURVEY_CHILDREN_PER_SLOT = 2
#: Stack size of the threads started while the emulation runs. moto runs every execution in
#: four threads and every request in one; each reserves its whole stack as address space
#: (8 MiB by default on Linux), so a burst of 40 uploads would reserve over a GiB of it, all
#: counted against a process's RLIMIT_AS although almost none of it is ever touched.
THREAD_STACK_BYTES = 4 * 2**20
#: The time-lag job definition's command (the worker image's second entrypoint).
TIMELAG_ENTRYPOINT = ("python", "-m", "skysift.aws.timelag_job")


def project_root() -> Path:
    """The checkout holding template.yaml, statemachine/ and functions/ (cwd, else the repo)."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (candidate / "template.yaml").is_file() and (candidate / "statemachine").is_dir():
            return candidate
    raise ConfigError("no template.yaml with statemachine/ here: run from the skysift checkout")


# -- the moto server (one per process: the handlers keep their clients across invocations) ----
class MotoServer:
    """A moto server on a free local port, started once per process."""

    _instance: MotoServer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    @classmethod
    def get(cls) -> MotoServer:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _post(self, path: str, body: dict | None = None) -> None:
        import requests

        response = requests.post(f"{self.url}{path}", json=body or {}, timeout=30)
        response.raise_for_status()

    def reset(self) -> None:
        """Forget every resource (a fresh account)."""
        self._post("/moto-api/reset")

    @contextmanager
    def intercept(self, middleware: Callable[[Any], Any]) -> Iterator[None]:
        """Serve every request through ``middleware(app)`` (a WSGI app wrapping moto's) for the duration."""
        server = self._server._server  # werkzeug's BaseWSGIServer: its request handlers call server.app
        original = server.app
        server.app = middleware(original)
        try:
            yield
        finally:
            server.app = original

    def configure(self, config: dict | None = None) -> dict:
        """Execute state machines; Lambda and Batch without Docker (our dispatchers run the work).

        Returns the configuration it replaced (moto's configuration is process-wide, and the
        server runs in this process).
        """
        import copy

        from moto.core.config import default_user_config

        previous = {key: copy.deepcopy(default_user_config[key]) for key in ("batch", "lambda", "stepfunctions")}
        self._post("/moto-api/config", config or {"stepfunctions": {"execute_state_machine": True},
                                                   "batch": {"use_docker": False}, "lambda": {"use_docker": False}})
        return previous


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class LambdaContext:
    """The context object the Lambda runtime hands a handler (its deadline ``timeout_s`` after creation)."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    timeout_s: float = 900.0
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_s - time.monotonic()) * 1000))


def shorten_retries(definition: Any) -> Any:
    """The definition with every Retry's interval set to 1 s and no backoff (moto sleeps them)."""
    if isinstance(definition, list):
        return [shorten_retries(item) for item in definition]
    if not isinstance(definition, dict):
        return definition
    out = {k: shorten_retries(v) for k, v in definition.items()}
    for retrier in out.get("Retry", []):
        retrier.update(FAST_RETRY)
    return out


def substitute(text: str, substitutions: Mapping[str, Any]) -> str:
    """Apply DefinitionSubstitutions (``${Name}``) as Step Functions does; every name must be given."""
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", str(value))
    leftover = sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text)))
    if leftover:
        raise ConfigError(f"the definition uses substitutions the template does not give: {leftover}")
    return text


class Emulation:
    """The system of ``template.yaml`` on moto, in this process.

    Use as a context manager::

        with Emulation() as aws:
            aws.upload("sky.fits", "night1/sky.fits")
            aws.wait()
            aws.read_table("sources")
    """

    def __init__(self, root: str | Path | None = None, *, parameters: Mapping[str, Any] | None = None,
                 fast_retries: bool = True, bucket_policies: bool = False, concurrency: int = CONCURRENCY,
                 lambda_timeout_s: float | None = None) -> None:
        self.root = Path(root) if root else project_root()
        self.template = load_template(self.root / "template.yaml")
        slots = max(1, concurrency)  # handlers and jobs at once
        self.parameter_overrides = {"SurveyMaxConcurrency": SURVEY_CHILDREN_PER_SLOT * slots, **(parameters or {})}
        check_parameters(self.template, self.parameter_overrides)  # before anything starts
        self.fast_retries = fast_retries
        self.bucket_policies = bucket_policies
        self.server: MotoServer | None = None
        self.names: dict[str, Any] = {}
        self.handlers: dict[str, str] = {}
        self.timeouts: dict[str, float] = {}  # function name -> Timeout (s) of the template
        self.lambda_timeout_s = lambda_timeout_s  # instead of every function's Timeout, when set
        self.function_env: dict[str, str] = {}
        self._stack: ExitStack | None = None
        self._throttles: dict[str, int] = {}
        self._throttle_lock = threading.Lock()
        self._running = threading.BoundedSemaphore(slots)
        self._timelag_lock = threading.Lock()  # one time-lag job at a time: it sets process-wide variables
        self.timelag_jobs: list[list[str]] = []  # arguments of every time-lag job run, in order

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Emulation:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stack = ExitStack()
        self._stack.callback(threading.stack_size, threading.stack_size(THREAD_STACK_BYTES))
        try:
            self.server = MotoServer.get()
            self._stack.enter_context(environment({
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": self.server.url,
                "MOTO_PORT": str(self.server.port), "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_DEV": "false",
            }))
            self.server.reset()
            previous = self.server.configure()
            self._stack.callback(self.server.configure, previous)
            self._stack.enter_context(moto_patches.all_patches(self._dispatch_lambda, self._dispatch_batch))
            self._create()
            self._stack.enter_context(environment(self.function_env))
            if str(self.root) not in sys.path:
                sys.path.insert(0, str(self.root))
        except BaseException:
            self._stack.close()
            raise

    def stop(self) -> None:
        if self._stack is not None:
            self._wait_quietly()
            self._stack.close()
            self._stack = None

    def _wait_quietly(self) -> None:
        try:
            self.wait(timeout_s=60)
        except TimeoutError:
            log.warning("executions still running when the emulation stopped")

    # -- clients -----------------------------------------------------------------------------
    @property
    def region_name(self) -> str:
        return REGION

    def stack_outputs(self) -> dict[str, str]:
        """The template's ``Outputs`` as this emulation resolves them (those of resources it creates)."""
        outputs = {}
        for key, spec in self.template.get("Outputs", {}).items():
            with contextlib.suppress(ConfigError):
                outputs[key] = str(self.resolver.resolve(spec["Value"]))
        return outputs

    def publish_stack(self, name: str) -> None:
        """A CloudFormation stack ``name`` on moto holding :meth:`stack_outputs`, so that the commands
        that look a deployed stack up (``skysift ingest``, ``alerts subscribe``, ``query --athena``)
        find this emulation with ``--stack NAME``; its resources exist already, outside the stack."""
        body = {"Resources": {"Emulation": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {key: {"Value": value} for key, value in self.stack_outputs().items()}}
        with warnings.catch_warnings():  # moto creates no such resource, and says so
            warnings.filterwarnings("ignore", message=".*WaitConditionHandle.*")
            self.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(body))

    def client(self, service: str):
        return boto3.client(service, region_name=REGION)

    @property
    def raw_bucket(self) -> str:
        return self.names["RawBucket"]

    @property
    def catalog_bucket(self) -> str:
        return self.names["CatalogBucket"]

    @property
    def database(self) -> str:
        return self.names["CatalogDatabase"]

    @property
    def topic_arn(self) -> str:
        return self.names["AlertTopic"]

    @property
    def ingest_arn(self) -> str:
        return self.names["IngestImageStateMachine"]

    @property
    def survey_arn(self) -> str:
        return self.names["SurveyIngestStateMachine"]

    @property
    def timelag_arn(self) -> str:
        return self.names["TimeLagAnalysisStateMachine"]

    # -- creating the resources of the template ------------------------------------------------
    def _create(self) -> None:
        t = self.template
        iam = self.client("iam")
        role_arn = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        self.role_arn = role_arn
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="skysift-batch", Description="batch", VpcId=vpc)["GroupId"]
        parameters = {**parameter_defaults(t), "Stage": "emu", "SubnetIds": [subnet], "SecurityGroupIds": [group],
                      "WorkerImageUri": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/skysift-worker:emulated"}
        parameters.update({k: str(v) for k, v in self.parameter_overrides.items()})
        pseudo = {"AWS::AccountId": ACCOUNT_ID, "AWS::Region": REGION, "AWS::Partition": "aws",
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": f"skysift-{parameters['Stage']}"}
        self.parameters = parameters
        self.resolver = r = Resolver(t, parameters, pseudo)

        self._create_buckets(r)
        self._create_catalog(r)
        self._create_keys(r)
        self._create_alerting(r)
        self._create_functions(r)
        self._create_batch(r)
        self._create_state_machines(r)
        self._create_alarms(r)
        self.names = dict(r.refs)

    def _props(self, spec: dict) -> dict:
        return self.resolver.resolve(spec.get("Properties", {}))

    def _create_buckets(self, r: Resolver) -> None:
        s3 = self.client("s3")
        buckets = resources_of_type(self.template, "AWS::S3::Bucket")
        for name, spec in buckets.items():  # names first: a bucket's properties may name another (access logs)
            r.refs[name] = r.resolve(spec["Properties"]["BucketName"])
            r.attributes[(name, "Arn")] = f"arn:aws:s3:::{r.refs[name]}"
        for spec in buckets.values():
            p = self._props(spec)
            bucket = p["BucketName"]
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]]})
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
            if "VersioningConfiguration" in p:
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=p["VersioningConfiguration"])
            if p.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
                s3.put_bucket_notification_configuration(
                    Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
        # The template's bucket policies deny requests without TLS, and the emulation's endpoint
        # is plain HTTP, which moto (rightly) refuses under them; they are applied on request.
        for spec in resources_of_type(self.template, "AWS::S3::BucketPolicy").values() if self.bucket_policies else ():
            p = self._props(spec)
            s3.put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))

    def _create_catalog(self, r: Resolver) -> None:
        glue = self.client("glue")
        for name, spec in resources_of_type(self.template, "AWS::Glue::Database").items():
            p = self._props(spec)
            glue.create_database(DatabaseInput=p["DatabaseInput"])
            r.refs[name] = p["DatabaseInput"]["Name"]
        for name, spec in resources_of_type(self.template, "AWS::Glue::Table").items():
            p = self._props(spec)
            glue.create_table(DatabaseName=p["DatabaseName"], TableInput=p["TableInput"])
            r.refs[name] = p["TableInput"]["Name"]
        athena = self.client("athena")
        for name, spec in resources_of_type(self.template, "AWS::Athena::WorkGroup").items():
            p = self._props(spec)
            configuration = dict(p["WorkGroupConfiguration"])
            configuration["BytesScannedCutoffPerQuery"] = int(configuration["BytesScannedCutoffPerQuery"])
            athena.create_work_group(Name=p["Name"], Description=p.get("Description", ""), Configuration=configuration)
            r.refs[name] = p["Name"]

    def _create_keys(self, r: Resolver) -> None:
        kms = self.client("kms")
        for name, spec in resources_of_type(self.template, "AWS::KMS::Key").items():
            p = self._props(spec)
            key = kms.create_key(Description=p.get("Description", ""), Policy=json.dumps(p["KeyPolicy"]))["KeyMetadata"]
            if p.get("EnableKeyRotation"):
                kms.enable_key_rotation(KeyId=key["KeyId"])
            r.refs[name] = key["KeyId"]
            r.attributes[(name, "Arn")] = key["Arn"]
            r.attributes[(name, "KeyId")] = key["KeyId"]

    def _create_alerting(self, r: Resolver) -> None:
        sns, dynamodb = self.client("sns"), self.client("dynamodb")
        for name, spec in resources_of_type(self.template, "AWS::SNS::Topic").items():
            p = self._props(spec)
            attributes = {"KmsMasterKeyId": p.get("KmsMasterKeyId", "")}
            if p.get("FifoTopic"):
                attributes.update(FifoTopic="true", ContentBasedDeduplication=str(bool(p.get("ContentBasedDeduplication"))).lower())
            arn = sns.create_topic(Name=p["TopicName"], Attributes=attributes)["TopicArn"]
            r.refs[name] = arn
            r.attributes[(name, "TopicName")] = p["TopicName"]
            r.attributes[(name, "TopicArn")] = arn
        for name, spec in resources_of_type(self.template, "AWS::DynamoDB::Table").items():
            p = self._props(spec)
            dynamodb.create_table(TableName=p["TableName"], BillingMode=p["BillingMode"],
                                  AttributeDefinitions=p["AttributeDefinitions"], KeySchema=p["KeySchema"])
            if "TimeToLiveSpecification" in p:
                dynamodb.update_time_to_live(TableName=p["TableName"], TimeToLiveSpecification=p["TimeToLiveSpecification"])
            r.refs[name] = p["TableName"]
            r.attributes[(name, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{p['TableName']}"
        logs = self.client("logs")
        for name, spec in resources_of_type(self.template, "AWS::Logs::LogGroup").items():
            p = self._props(spec)
            logs.create_log_group(logGroupName=p["LogGroupName"])
            r.refs[name] = p["LogGroupName"]
            r.attributes[(name, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{p['LogGroupName']}:*"

    def _create_functions(self, r: Resolver) -> None:
        lam = self.client("lambda")
        globals_ = self.template.get("Globals", {}).get("Function", {})
        for name, spec in resources_of_type(self.template, "AWS::Serverless::Function").items():
            merged = {**globals_, **spec["Properties"]}
            merged["Environment"] = {"Variables": {**globals_.get("Environment", {}).get("Variables", {}),
                                                   **spec["Properties"].get("Environment", {}).get("Variables", {})}}
            p = r.resolve(merged)
            function_name = p["FunctionName"]
            variables = {k: str(v) for k, v in p["Environment"]["Variables"].items()}
            arn = lam.create_function(
                FunctionName=function_name, Role=self.role_arn, PackageType="Image",
                Code={"ImageUri": self.parameters["WorkerImageUri"]}, ImageConfig=p.get("ImageConfig", {}),
                Environment={"Variables": variables}, Timeout=int(p.get("Timeout", 3)),
                MemorySize=int(p.get("MemorySize", 128)), Description=p.get("Description", ""),
            )["FunctionArn"]
            self.handlers[function_name] = p["ImageConfig"]["Command"][0]
            self.timeouts[function_name] = float(p.get("Timeout", 3))
            self.function_env.update(variables)
            r.refs[name] = function_name
            r.attributes[(name, "Arn")] = arn

    def _create_batch(self, r: Resolver) -> None:
        iam, batch = self.client("iam"), self.client("batch")
        for name, spec in resources_of_type(self.template, "AWS::IAM::Role").items():
            role = iam.create_role(RoleName=f"skysift-{self.parameters['Stage']}-{name}",
                                   AssumeRolePolicyDocument=json.dumps(self._props(spec)["AssumeRolePolicyDocument"]))
            r.refs[name] = role["Role"]["RoleName"]
            r.attributes[(name, "Arn")] = role["Role"]["Arn"]
        for name, spec in resources_of_type(self.template, "AWS::Batch::ComputeEnvironment").items():
            p = self._props(spec)
            resources = {"type": p["ComputeResources"]["Type"], "maxvCpus": int(p["ComputeResources"]["MaxvCpus"]),
                         "subnets": p["ComputeResources"]["Subnets"],
                         "securityGroupIds": p["ComputeResources"]["SecurityGroupIds"]}
            arn = batch.create_compute_environment(
                computeEnvironmentName=f"skysift-{self.parameters['Stage']}-{name}", type=p["Type"],
                state=p["State"], computeResources=resources,
                serviceRole=self.role_arn,  # moto requires it; AWS uses its service-linked role
            )["computeEnvironmentArn"]
            r.refs[name] = arn
        for name, spec in resources_of_type(self.template, "AWS::Batch::JobQueue").items():
            p = self._props(spec)
            order = [{"order": int(o["Order"]), "computeEnvironment": o["ComputeEnvironment"]}
                     for o in p["ComputeEnvironmentOrder"]]
            r.refs[name] = batch.create_job_queue(jobQueueName=p["JobQueueName"], state=p["State"],
                                                  priority=int(p["Priority"]), computeEnvironmentOrder=order)["jobQueueArn"]
        for name, spec in resources_of_type(self.template, "AWS::Batch::JobDefinition").items():
            p = self._props(spec)
            c = p["ContainerProperties"]
            container = {
                "image": c["Image"], "command": c["Command"], "executionRoleArn": c["ExecutionRoleArn"],
                "jobRoleArn": c["JobRoleArn"],
                "resourceRequirements": [{"type": q["Type"], "value": str(q["Value"])} for q in c["ResourceRequirements"]],
                "environment": [{"name": e["Name"], "value": str(e["Value"])} for e in c.get("Environment", [])],
                "networkConfiguration": {"assignPublicIp": c["NetworkConfiguration"]["AssignPublicIp"]},
            }
            r.refs[name] = batch.register_job_definition(
                jobDefinitionName=p["JobDefinitionName"], type=p["Type"], platformCapabilities=p["PlatformCapabilities"],
                containerProperties=container, timeout={"attemptDurationSeconds": int(p["Timeout"]["AttemptDurationSeconds"])},
                **self._retry_strategy(p),
            )["jobDefinitionArn"]

    @staticmethod
    def _retry_strategy(p: dict) -> dict:
        """The job definition's RetryStrategy as RegisterJobDefinition takes it (recorded; moto does not retry)."""
        strategy = p.get("RetryStrategy")
        if not strategy:
            return {}
        rules = [{k[0].lower() + k[1:]: str(v) for k, v in rule.items()} for rule in strategy.get("EvaluateOnExit", [])]
        return {"retryStrategy": {"attempts": int(strategy["Attempts"]), "evaluateOnExit": rules}}

    def definition(self, name: str) -> dict:
        """A state machine's definition as the emulation runs it (substituted; retries shortened)."""
        spec = self.template["Resources"][name]
        substitutions = self.resolver.resolve(spec["Properties"].get("DefinitionSubstitutions", {}))
        text = (self.root / spec["Properties"]["DefinitionUri"]).read_text()
        definition = json.loads(substitute(text, substitutions))
        return shorten_retries(definition) if self.fast_retries else definition

    def _create_state_machines(self, r: Resolver) -> None:
        sfn, events = self.client("stepfunctions"), self.client("events")
        machines = resources_of_type(self.template, "AWS::Serverless::StateMachine")
        for name in sorted(machines, key=lambda n: n != "IngestImageStateMachine"):
            p = machines[name]["Properties"]
            machine_name = r.resolve(p["Name"])
            r.refs.setdefault(name, f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{machine_name}")
            arn = sfn.create_state_machine(name=machine_name, definition=json.dumps(self.definition(name)),
                                           roleArn=self.role_arn, type=p.get("Type", "STANDARD"))["stateMachineArn"]
            r.refs[name] = arn
            r.attributes[(name, "Name")] = machine_name
            for event_name, event in p.get("Events", {}).items():
                if event["Type"] != "EventBridgeRule":
                    continue
                rule = f"{name}{event_name}"
                pattern = r.resolve(event["Properties"]["Pattern"])
                events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
                events.put_targets(Rule=rule, Targets=[{"Id": "IngestImage", "Arn": arn, "RoleArn": self.role_arn}])
                r.refs[rule] = rule

    def _create_alarms(self, r: Resolver) -> None:
        cloudwatch = self.client("cloudwatch")
        for name, spec in resources_of_type(self.template, "AWS::CloudWatch::Alarm").items():
            p = self._props(spec)
            cloudwatch.put_metric_alarm(
                AlarmName=name, AlarmDescription=p["AlarmDescription"], Namespace=p["Namespace"],
                MetricName=p["MetricName"], Dimensions=p["Dimensions"], Statistic=p["Statistic"],
                Period=int(p["Period"]), EvaluationPeriods=int(p["EvaluationPeriods"]),
                Threshold=float(p["Threshold"]), ComparisonOperator=p["ComparisonOperator"],
                TreatMissingData=p["TreatMissingData"], AlarmActions=p["AlarmActions"])

    # -- dispatch: what Lambda and Batch would run -------------------------------------------------
    def throttle(self, function: str, times: int = 1) -> None:
        """Make the Lambda service refuse the next ``times`` invocations of a function (429), as under load."""
        with self._throttle_lock:
            self._throttles[self.names[function]] = times

    def _dispatch_lambda(self, event: dict, function_name: str) -> Any:
        with self._throttle_lock:
            if self._throttles.get(function_name, 0) > 0:
                self._throttles[function_name] -= 1
                raise moto_patches.too_many_requests(function_name)
        try:
            handler_path = self.handlers[function_name]
        except KeyError:
            raise ConfigError(f"no handler for function {function_name!r}") from None
        module_name, attribute = handler_path.rsplit(".", 1)
        handler = getattr(importlib.import_module(module_name), attribute)
        with self._running:
            context = LambdaContext(function_name=function_name, memory_limit_in_mb=1024,
                                    invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}",
                                    aws_request_id=str(uuid.uuid4()),
                                    timeout_s=self.lambda_timeout_s or self.timeouts.get(function_name, 900.0))
            return handler(event, context)

    def _dispatch_batch(self, command: list[str], environment_: dict[str, str]) -> int:
        from skysift.aws import worker

        if command[:3] == list(TIMELAG_ENTRYPOINT):
            return self._run_timelag_worker(command[3:], environment_)
        if not command or command[0] != "batch":
            log.error("the worker image runs Lambda handlers, 'batch ...' or %s, not %s", " ".join(TIMELAG_ENTRYPOINT), command)
            return 1
        # One process for the tiles: a real Batch job is a process of its own and forks its tile
        # workers safely, but here the job runs on a thread of the emulator, and a fork of a process
        # with the moto server's and the other executions' threads can inherit a lock another thread
        # holds (a child then hangs for good). The forked path is tested as a process
        # (tests/aws/test_containers.py runs the job with the template's environment; tests/test_tiles.py).
        with self._running:
            return worker.main(command[1:], environ={**os.environ, **environment_, "SKYSIFT_WORKERS": "1"})

    def _run_timelag_worker(self, args: list[str], environment_: dict[str, str]) -> int:
        """``python -m skysift.aws.timelag_job ARGS`` with the job's environment (it reads os.environ)."""
        from skysift.aws import timelag_job

        self.timelag_jobs.append(list(args))
        with self._running, self._timelag_lock, environment(environment_):
            return timelag_job.main(args)

    # -- using the system --------------------------------------------------------------------------
    def upload(self, path: str | Path | bytes, key: str, bucket: str | None = None) -> str:
        """Put a file (or bytes) in the raw bucket; S3 -> EventBridge starts IngestImage."""
        body = path if isinstance(path, bytes) else Path(path).read_bytes()
        self.client("s3").put_object(Bucket=bucket or self.raw_bucket, Key=key, Body=body)
        return f"s3://{bucket or self.raw_bucket}/{key}"

    def executions(self, state_machine_arn: str | None = None) -> list[dict]:
        """Every execution of a state machine (IngestImage by default), described, oldest first."""
        sfn = self.client("stepfunctions")
        arn = state_machine_arn or self.ingest_arn
        listed = sfn.list_executions(stateMachineArn=arn, maxResults=1000)["executions"]
        described = [sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]
        return sorted(described, key=lambda d: d["startDate"])

    def wait(self, timeout_s: float = 300, state_machine_arns: list[str] | None = None) -> list[dict]:
        """Block until no execution is running; returns the IngestImage executions."""
        arns = state_machine_arns or [self.ingest_arn, self.survey_arn, self.timelag_arn]
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout_s
        while True:
            running = [e for arn in arns
                       for e in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=1000)["executions"]]
            if not running:
                return self.executions()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(running)} executions still running after {timeout_s:g} s")
            time.sleep(0.2)

    def start_survey(self, *, prefix: str | None = None, manifest_key: str | None = None,
                     bucket: str | None = None) -> str:
        """Start SurveyIngest over a prefix of the raw bucket, or over a JSON manifest object."""
        bucket = bucket or self.raw_bucket
        document = ({"manifest": {"bucket": bucket, "key": manifest_key}} if manifest_key
                    else {"bucket": bucket, "prefix": prefix or ""})
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.survey_arn, input=json.dumps(document))["executionArn"]

    def start_timelag(self, request: Mapping[str, Any], name: str | None = None) -> str:
        """Start TimeLagAnalysis with a time-lag request (its ``output`` is placed by the state machine)."""
        kwargs = {"name": name} if name else {}
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.timelag_arn, input=json.dumps(dict(request)), **kwargs)["executionArn"]

    def read_table(self, table: str) -> pa.Table:
        """A catalog table as registered in Glue: its partitions' Parquet objects (via awswrangler)."""
        import awswrangler as wr

        partitions = wr.catalog.get_parquet_partitions(database=self.database, table=table)
        s3 = self.client("s3")
        parts = []
        for location, values in sorted(partitions.items()):
            bucket, _, prefix = location.removeprefix("s3://").partition("/")
            for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
                data = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
                for key, value in zip(("survey", "band", "obs_night"), values, strict=True):
                    data = data.append_column(key, pa.array([value] * data.num_rows, pa.string()))
                parts.append(data)
        return pa.concat_tables(parts, promote_options="default") if parts else pa.table({})

    def subscribe_queue(self, name: str, filter_policy: dict | None = None) -> str:
        """An SQS queue subscribed to the alert topic (with a filter policy); returns its URL.

        A FIFO queue (``NAME.fifo``) when the topic is a FIFO topic: what receives each alert exactly once.
        """
        sqs = self.client("sqs")
        fifo = self.topic_arn.endswith(".fifo")
        url = sqs.create_queue(QueueName=f"{name}.fifo" if fifo else name,
                               Attributes={"FifoQueue": "true"} if fifo else {})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"RawMessageDelivery": "false"}
        if filter_policy:
            attributes["FilterPolicy"] = json.dumps(filter_policy)
        self.client("sns").subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes)
        return url

    def receive(self, queue_url: str) -> list[dict]:
        """Every message waiting in a queue (SNS envelopes decoded)."""
        sqs = self.client("sqs")
        out = []
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return out
            for message in messages:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def get_json(self, uri: str) -> dict:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return json.loads(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


__all__ = ["Emulation", "MotoServer", "shorten_retries", "substitute"]
