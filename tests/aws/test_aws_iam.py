"""Least privilege that works: each function and Batch job is granted the AWS actions its code
calls, on the buckets and prefixes it touches, and nothing broader on data.

What the code calls is read two ways:

* **statically**, with ``ast``: from each Lambda function's step (template ``ImageConfig`` ->
  ``functions/*/app.py`` -> the step its handler calls) and each Batch job's entrypoint, every
  boto3 client call (``s3.put_object``, ``self.sns.publish_batch``, paginators) and the few library
  calls that reach AWS for us (:data:`LIBRARY_ACTIONS`), followed through the package's own
  functions, becomes IAM actions. The role must grant each of them, and every data action it grants
  must be one of them;
* **at run time**, on moto: the sample events run through the handlers one at a time while every
  request is recorded with the function making it; the function's statements must allow each
  request's action on its exact resource (bucket and key), as IAM would judge it.

The roles are read as CloudFormation receives them: translated by samtranslator (SAM policy
templates expanded), intrinsic functions resolved with the template's parameter defaults.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws_support import EVENTS, JOB_ENTRYPOINTS, ROOT, sky_file

from skysift.aws.template import Resolver, load_template, parameter_defaults, resources_of_type

PACKAGE = ROOT / "src" / "skysift"
ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"

#: Services whose actions read or change data: never on ``Resource: "*"``, never ``service:*``.
DATA_SERVICES = {"s3", "glue", "dynamodb", "sns", "sqs", "athena", "kms"}
#: boto3 service name -> IAM prefix, where they differ.
IAM_PREFIX = {"stepfunctions": "states"}
#: API operations authorised by an IAM action of another name (the rest are ``service:Operation``).
IAM_ACTION_OF = {
    "s3:HeadObject": "s3:GetObject", "s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket",
    "s3:HeadBucket": "s3:ListBucket", "s3:DeleteObjects": "s3:DeleteObject", "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject", "s3:CompleteMultipartUpload": "s3:PutObject", "s3:GetBucketLocation": "s3:GetBucketLocation",
    "sns:PublishBatch": "sns:Publish",
}
#: S3 answers 403 instead of 404 for a missing key without s3:ListBucket on the bucket, and the
#: steps rely on "not found" (NoSuchKey, SourceNotFound): reading an object implies listing its bucket.
IMPLIED = {"s3:GetObject": {"s3:ListBucket"}}

READ, WRITE = frozenset({"s3:GetObject"}), frozenset({"s3:PutObject", "s3:AbortMultipartUpload"})


def _file_mode(call: ast.Call, position: int) -> frozenset[str]:
    """Read or write actions of an fsspec-style ``open(path, mode)`` call."""
    mode = call.args[position] if len(call.args) > position else next(
        (k.value for k in call.keywords if k.arg == "mode"), None)
    text = mode.value if isinstance(mode, ast.Constant) else "rb"
    return WRITE if any(c in text for c in "wax") else READ


#: Library calls that reach AWS on the code's behalf, and the IAM actions they need. Kept short:
#: a call into one of these libraries that is not listed fails the test (add it, with its actions).
LIBRARY_ACTIONS: dict[str, frozenset[str] | Callable[[ast.Call], frozenset[str]]] = {
    # awswrangler: one glue BatchCreatePartition per call (AlreadyExists is ignored)
    "awswrangler.catalog.add_parquet_partitions": frozenset({"glue:BatchCreatePartition"}),
    # awswrangler, ctas_approach=False: the query and its workgroup, the Glue table Athena reads as
    # the caller, and the result objects it writes and reads under the workgroup's output location
    "awswrangler.athena.read_sql_query": frozenset({
        "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
        "athena:StopQueryExecution", "athena:GetWorkGroup", "glue:GetDatabase", "glue:GetTable",
        "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition", "s3:GetObject",
        "s3:ListBucket", "s3:GetBucketLocation", "s3:PutObject", "s3:AbortMultipartUpload"}),
    # fsspec (s3fs): reads are HeadObject + ranged GetObject; writes are (multipart) PutObject
    "fsspec.open": lambda call: _file_mode(call, 1),
    "fsspec.filesystem().get": READ,
    "fsspec.filesystem": frozenset(),  # no request: the filesystem object only
    "fsspec.core.url_to_fs": frozenset(),  # no request: the filesystem object only
    # astropy reads s3:// URLs through fsspec when told to
    "astropy.io.fits.open": lambda call: READ if any(k.arg == "use_fsspec" for k in call.keywords) else frozenset(),
    # Powertools idempotency: the record's life cycle in its DynamoDB table
    "aws_lambda_powertools.utilities.idempotency.DynamoDBPersistenceLayer": frozenset({
        "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}),
    # ... whose configuration and decorator make no request of their own (the persistence layer does)
    "aws_lambda_powertools.utilities.idempotency.IdempotencyConfig": frozenset(),
    "aws_lambda_powertools.utilities.idempotency.idempotent_function": frozenset(),
}
#: Libraries whose every call the table above must know (others, like pyarrow, never reach AWS).
AWS_LIBRARIES = ("awswrangler", "fsspec", "s3fs", "aws_lambda_powertools.utilities.idempotency")
#: Methods of an fsspec filesystem (the code names it ``fs``): what each asks of S3.
FS_METHODS: dict[str, frozenset[str] | Callable[[ast.Call], frozenset[str]]] = {
    "open": lambda call: _file_mode(call, 1), "size": READ, "info": READ | {"s3:ListBucket"},
    "exists": frozenset({"s3:ListBucket"}), "find": frozenset({"s3:ListBucket"}), "ls": frozenset({"s3:ListBucket"}),
    "get": READ, "pipe": WRITE, "rm": frozenset({"s3:DeleteObject"}),
}
#: The names the code gives boto3 clients (``self.s3``, ``ctx.s3``, ``s3``) -> boto3 service.
CLIENT_NAMES = {"s3": "s3", "glue": "glue", "sns": "sns", "dynamodb": "dynamodb", "athena": "athena",
                "batch": "batch", "sfn": "stepfunctions", "sqs": "sqs", "kms": "kms"}
#: Modules no function or job runs (the emulation and the operator's command line): left out, so
#: that a method name they share with the deployed code (``start``, ``upload``) cannot pull them in.
NOT_DEPLOYED = {"skysift.aws.emulation.emulate", "skysift.aws.emulation.moto_patches", "skysift.cli.aws"}


# -- the code: functions, their calls, and what those calls ask of AWS -------------------------
@dataclass
class Function:
    qualname: str
    module: str
    cls: str | None
    node: ast.FunctionDef | ast.AsyncFunctionDef
    actions: set[str] = field(default_factory=set)
    callees: set[str] = field(default_factory=set)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """Local name -> the dotted name it stands for, over every import in the module (also in functions)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _dotted(node: ast.AST, imports: dict[str, str]) -> str | None:
    """``wr.catalog.add_parquet_partitions`` -> ``awswrangler.catalog.add_parquet_partitions``."""
    if isinstance(node, ast.Name):
        return imports.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, imports)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call):
        base = _dotted(node.func, imports)
        return f"{base}()" if base else None
    return None


def _receiver_name(node: ast.AST) -> str | None:
    """The last name of a call's receiver: ``ctx.s3`` -> ``s3``, ``s3`` -> ``s3``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


@functools.cache
def common_methods() -> frozenset[str]:
    """Method names of the builtin, file, regex, path and array types the code calls methods on:
    ``m.start()``, ``pattern.search(...)``, ``table.select(...)`` are theirs, not a package method
    of the same name (the receiver's type is unknown to this reading)."""
    import io
    import re as re_module

    import numpy as np
    import pandas as pd
    import pyarrow as pa

    types = (str, bytes, list, dict, set, tuple, object, io.BytesIO, io.TextIOWrapper, Path,
             type(re_module.compile("")), type(re_module.match("", "")), np.ndarray, pa.Table, pd.DataFrame)
    return frozenset(name for kind in types for name in dir(kind))


@functools.cache
def _operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name of a service."""
    import botocore
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(op): op for op in model.operation_names}


def iam_action(service: str, operation: str) -> str:
    name = f"{IAM_PREFIX.get(service, service)}:{operation}"
    return IAM_ACTION_OF.get(name, name)


class Code:
    """The package's functions and methods, each with the AWS actions its own body asks for."""

    def __init__(self, root: Path = PACKAGE) -> None:
        self.functions: dict[str, Function] = {}
        self.unknown: list[str] = []  # AWS-reaching calls this test cannot map: it fails on them
        for path in sorted(root.rglob("*.py")):
            module = _module_name(path)
            if module in NOT_DEPLOYED:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            imports = _imports(tree, module, path.name == "__init__.py")
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self._add(Function(f"{module}.{node.name}", module, None, node), imports)
                elif isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            self._add(Function(f"{module}.{node.name}.{item.name}", module, node.name, item), imports)
                    self.functions.setdefault(f"{module}.{node.name}", Function(f"{module}.{node.name}", module, node.name, node))
        self._resolve()

    def _add(self, fn: Function, imports: dict[str, str]) -> None:
        self.functions[fn.qualname] = fn
        fn.imports = imports  # type: ignore[attr-defined]
        for call in (n for n in ast.walk(fn.node) if isinstance(n, ast.Call)):
            fn.actions |= self._call_actions(fn, call, imports)

    def _call_actions(self, fn: Function, call: ast.Call, imports: dict[str, str]) -> set[str]:
        dotted = _dotted(call.func, imports) or ""
        for name, actions in LIBRARY_ACTIONS.items():
            if dotted == name:
                return set(actions(call) if callable(actions) else actions)
        if dotted.startswith(AWS_LIBRARIES):
            self.unknown.append(f"{fn.qualname}: {dotted} (add it to LIBRARY_ACTIONS)")
            return set()
        if not isinstance(call.func, ast.Attribute):
            return set()
        method, receiver = call.func.attr, _receiver_name(call.func.value)
        if receiver == "fs" and method in FS_METHODS:
            actions = FS_METHODS[method]
            return set(actions(call) if callable(actions) else actions)
        if receiver in CLIENT_NAMES:
            service = CLIENT_NAMES[receiver]
            if method in ("get_waiter", "close", "can_paginate"):
                return set()
            if method == "get_paginator":
                method = call.args[0].value
            if method not in _operations(service):
                self.unknown.append(f"{fn.qualname}: {receiver}.{method} is not a {service} operation")
                return set()
            return {iam_action(service, _operations(service)[method])}
        return set()

    def _resolve(self) -> None:
        """Each function's callees among the package's functions (by name: a method call may reach
        any method of that name, since the receiver's class is not known; that over-approximates)."""
        by_name: dict[str, list[str]] = {}
        for qualname in self.functions:
            by_name.setdefault(qualname.rsplit(".", 1)[1], []).append(qualname)
        for fn in self.functions.values():
            if isinstance(fn.node, ast.ClassDef):
                init = f"{fn.qualname}.__init__"
                fn.callees |= {init} if init in self.functions else set()
                continue
            imports = fn.imports  # type: ignore[attr-defined]
            for call in (n for n in ast.walk(fn.node) if isinstance(n, ast.Call)):
                for argument in [*call.args, *(k.value for k in call.keywords)]:  # a method handed over to be
                    if (isinstance(argument, ast.Attribute) and isinstance(argument.value, ast.Name)  # called later
                            and argument.value.id == "self" and f"{fn.module}.{fn.cls}.{argument.attr}" in self.functions):
                        fn.callees.add(f"{fn.module}.{fn.cls}.{argument.attr}")  # (idempotent_function(self._send))
                if isinstance(call.func, ast.Name):
                    target = imports.get(call.func.id, f"{fn.module}.{call.func.id}")
                    if target in self.functions:
                        fn.callees.add(target)
                    elif fn.cls and f"{fn.module}.{fn.cls}.{call.func.id}" in self.functions:
                        fn.callees.add(f"{fn.module}.{fn.cls}.{call.func.id}")
                elif isinstance(call.func, ast.Attribute):
                    dotted = _dotted(call.func, imports) or ""
                    if dotted in self.functions:  # module.function (``storage.fingerprint``)
                        fn.callees.add(dotted)
                        continue
                    receiver, method = _receiver_name(call.func.value), call.func.attr
                    if receiver in CLIENT_NAMES:
                        continue
                    if receiver == "self" and fn.cls and f"{fn.module}.{fn.cls}.{method}" in self.functions:
                        fn.callees.add(f"{fn.module}.{fn.cls}.{method}")
                    elif receiver == "self" or method not in common_methods():
                        fn.callees |= {q for q in by_name.get(method, []) if self.functions[q].cls}

    def reachable(self, entry: str) -> Iterator[Function]:
        seen, todo = set(), [entry]
        while todo:
            qualname = todo.pop()
            if qualname in seen or qualname not in self.functions:
                continue
            seen.add(qualname)
            todo.extend(self.functions[qualname].callees)
            yield self.functions[qualname]

    def actions(self, entry: str) -> set[str]:
        """The IAM actions everything reachable from ``entry`` asks for (with what they imply)."""
        actions = set().union(*(fn.actions for fn in self.reachable(entry)))
        return actions.union(*(IMPLIED.get(a, set()) for a in actions))


@functools.cache
def code() -> Code:
    return Code()


# -- the template: roles as CloudFormation receives them ---------------------------------------
TEMPLATE = load_template(ROOT / "template.yaml")


class _Resolver(Resolver):
    """Resolves every resource to a plausible physical name or ARN (as deployed in REGION)."""

    def _ref(self, name: str) -> Any:
        try:
            return super()._ref(name)
        except Exception:
            return self._physical(name)

    def _getatt(self, resource: str, attribute: str) -> Any:
        name = self._physical(resource)
        kind = self.template["Resources"][resource]["Type"]
        if attribute == "Arn":
            return {"AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
                    "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
                    "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
                    }.get(kind, f"arn:{PARTITION}:{kind.split('::')[1].lower()}:{REGION}:{ACCOUNT}:{name}")
        if attribute == "TopicName":
            return self.resolve(self.template["Resources"][resource]["Properties"]["TopicName"])
        return f"{name}.{attribute}"

    def _physical(self, name: str) -> str:
        spec = self.template["Resources"][name]
        p = spec.get("Properties", {})
        for key in ("BucketName", "TableName", "FunctionName", "Name", "JobQueueName", "JobDefinitionName"):
            if key in p:
                value = self.resolve(p[key])
                break
        else:
            value = self.resolve(p["DatabaseInput"]["Name"]) if "DatabaseInput" in p else name
        if spec["Type"] == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{self.resolve(p['TopicName'])}"
        if spec["Type"] in ("AWS::Batch::JobQueue", "AWS::Batch::JobDefinition"):
            kind = "job-queue" if spec["Type"] == "AWS::Batch::JobQueue" else "job-definition"
            return f"arn:{PARTITION}:batch:{REGION}:{ACCOUNT}:{kind}/{value}"
        return value


@functools.cache
def roles(stage: str = "dev") -> dict[str, list[dict]]:
    """Role logical id (``InspectFunctionRole``, ``LargeJobRole``, ...) -> its resolved statements."""
    import os

    from samtranslator.translator.transform import transform

    template = copy.deepcopy(TEMPLATE)
    for spec in template["Resources"].values():  # the artefacts `sam build` would fill in
        if spec["Type"] == "AWS::Serverless::Function":
            spec["Properties"]["ImageUri"] = "worker:latest"
        if spec["Type"] == "AWS::Serverless::StateMachine":
            spec["Properties"]["DefinitionUri"] = "s3://artefacts/definition.asl.json"

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        translated = transform(template, {}, NoManagedPolicies())
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION")
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved
    parameters = {**parameter_defaults(TEMPLATE), "Stage": stage, "SubnetIds": ["subnet-1"],
                  "SecurityGroupIds": ["sg-1"], "WorkerImageUri": "worker:latest"}
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
              "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "skysift-dev"}
    resolver = _Resolver(translated, parameters, pseudo)
    out = {}
    for name, spec in resources_of_type(translated, "AWS::IAM::Role").items():
        statements = []
        for policy in spec["Properties"].get("Policies", []):
            for statement in resolver.resolve(policy["PolicyDocument"])["Statement"]:
                statements.append({**statement, "Action": _listed(statement["Action"]),
                                   "Resource": _listed(statement["Resource"])})
        out[name] = statements
    return out


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def granted_actions(statements: list[dict]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in s["Action"]}


def function_steps() -> dict[str, str]:
    """Lambda function logical id -> the step it runs (``skysift.aws.steps.detect_step``, ``skysift.aws.reopen.*_step``),
    from functions/*/app.py:
    the call to a step in the body of its handler (the function decorated with ``lambda_handler``)."""
    steps = {}
    for name, spec in resources_of_type(TEMPLATE, "AWS::Serverless::Function").items():
        module, attribute = spec["Properties"]["ImageConfig"]["Command"][0].rsplit(".", 1)
        path = ROOT / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        imports = _imports(tree, module, False)
        [handler] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == attribute and any(
            _dotted(d.func if isinstance(d, ast.Call) else d, imports) == "skysift.aws.handlers.lambda_handler"
            for d in n.decorator_list)]
        [step] = {_dotted(n.func, imports) for n in ast.walk(handler) if isinstance(n, ast.Call)
                  and (_dotted(n.func, imports) or "").startswith("skysift.aws.")
                  and (_dotted(n.func, imports) or "").endswith("_step")}
        steps[name] = step
    return steps


def job_roles() -> dict[str, str]:
    """Batch job role logical id -> the entrypoint module its job definition runs."""
    out = {}
    for name, spec in resources_of_type(TEMPLATE, "AWS::Batch::JobDefinition").items():
        role = spec["Properties"]["ContainerProperties"]["JobRoleArn"]["Fn::GetAtt"][0]
        out[role] = JOB_ENTRYPOINTS[name]
    return out


def principals() -> dict[str, str]:
    """Role logical id -> the code entry point it runs (steps for functions, ``main`` for jobs)."""
    found = {f"{name}Role": step for name, step in function_steps().items()}
    found.update({role: f"{module}.main" for role, module in job_roles().items()})
    return found


# -- static: the code's calls against the grants ------------------------------------------------
def test_every_aws_reaching_call_in_the_package_is_understood():
    assert code().unknown == []


def test_every_function_and_job_has_a_known_entry_point():
    assert set(function_steps()) == set(resources_of_type(TEMPLATE, "AWS::Serverless::Function"))
    assert set(JOB_ENTRYPOINTS) == set(resources_of_type(TEMPLATE, "AWS::Batch::JobDefinition"))
    for role, entry in principals().items():
        assert entry in code().functions, (role, entry)
        assert role in roles(), role


@pytest.mark.parametrize("role", sorted(principals()))
def test_role_grants_every_action_its_code_calls_and_no_other_data_action(role):
    needed = code().actions(principals()[role])
    granted = granted_actions(roles()[role])
    assert needed, f"{role}: no AWS call found from {principals()[role]}: this test no longer sees the code"
    assert sorted(needed - granted) == [], f"{role} lacks what {principals()[role]} calls"
    unused = {a for a in granted - needed if a.split(":")[0] in DATA_SERVICES}
    assert sorted(unused) == [], f"{role} is granted data actions its code never calls"


def test_the_static_reading_finds_the_known_calls():
    """Guards the reader itself: calls we know each step makes are found."""
    expected = {
        "InspectFunctionRole": {"s3:GetObject", "s3:ListBucket"},
        "DetectFunctionRole": {"s3:GetObject", "s3:PutObject", "glue:BatchCreatePartition"},
        "AlertsFunctionRole": {"sns:Publish", "dynamodb:PutItem", "s3:PutObject", "glue:BatchCreatePartition"},
        "ReportFunctionRole": {"s3:ListBucket", "s3:GetObject", "s3:PutObject"},
        "TimeLagJobRole": {"athena:StartQueryExecution", "s3:GetObject", "s3:PutObject"},
    }
    for role, actions in expected.items():
        assert actions <= code().actions(principals()[role]), role
    assert not {a for a in code().actions(principals()["InspectFunctionRole"]) if a.split(":")[0] != "s3" or "Put" in a}


def _all_statements(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        for value in node.values():
            yield from _all_statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from _all_statements(value)


def test_no_data_action_is_granted_on_every_resource_or_as_a_wildcard():
    for name, statements in roles().items():
        for statement in statements:
            if statement["Effect"] != "Allow":
                continue
            data = [a for a in statement["Action"] if a.split(":")[0] in DATA_SERVICES]
            assert not [a for a in data if a.endswith("*")], (name, statement.get("Sid"))
            assert not (data and "*" in statement["Resource"]), (name, statement.get("Sid"))
            for resource in statement["Resource"] if data else ():
                assert re.fullmatch(r"arn:aws:[a-z0-9-]+:[^*]*(/\*|[^*])", resource), (name, statement.get("Sid"), resource)


# -- at run time: every request a function makes is allowed on its exact resource -----------------
def _request_resources(service: str, params: dict) -> list[str]:
    """The resource ARNs IAM checks for one request (S3, SNS, DynamoDB, Glue partitions)."""
    if service == "s3" and "Bucket" in params:
        bucket = params["Bucket"]
        return [f"arn:aws:s3:::{bucket}/{params['Key']}" if "Key" in params else f"arn:aws:s3:::{bucket}"]
    if service == "sns":
        return [params["TopicArn"]]
    if service == "dynamodb":
        return [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"]
    if service == "glue" and "TableName" in params:  # a table's partitions: the catalog, database and table
        glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
        return [f"{glue}:catalog", f"{glue}:database/{params['DatabaseName']}",
                f"{glue}:table/{params['DatabaseName']}/{params['TableName']}"]
    return []


def allows(statements: list[dict], action: str, resource: str) -> bool:
    """IAM's verdict for one action on one resource (Allow statements; no Deny, no conditions here)."""
    return any(s["Effect"] == "Allow" and "Condition" not in s
               and any(fnmatch.fnmatchcase(action, a) for a in s["Action"])
               and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"]) for s in statements)


class Recorder:
    """Every AWS request made in this process (boto3, and aiobotocore under s3fs), by the function that made it."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.requests: list[tuple[str, str, str, dict]] = []

    def record(self, client: Any, operation: str, params: dict) -> None:
        if self.current is not None:
            service = client.meta.service_model.service_name
            self.requests.append((self.current, service, operation, dict(params)))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import aiobotocore.client
        import botocore.client

        sync_call, async_call = botocore.client.BaseClient._make_api_call, aiobotocore.client.AioBaseClient._make_api_call
        recorder = self

        def make_api_call(client, operation, params):
            recorder.record(client, operation, params)
            return sync_call(client, operation, params)

        async def make_api_call_async(client, operation, params):
            recorder.record(client, operation, params)
            return await async_call(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
        monkeypatch.setattr(aiobotocore.client.AioBaseClient, "_make_api_call", make_api_call_async)


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def _run_steps_as_each_function(emulation, tmp_path, monkeypatch) -> Recorder:
    """The sample events through each function's handler in turn (the uploads' own runs finished first)."""
    import importlib

    from skysift.aws.emulation.emulate import LambdaContext

    sample = sky_file(tmp_path / "sample.fits")
    emulation.upload(sample, "night-2026-01-01/field-042.fits")
    emulation.upload(b"<html>503 Service Unavailable</html>", "night-2026-01-01/error-page.fits")
    emulation.upload(json.dumps([{"bucket": emulation.raw_bucket, "key": "night-2026-01-01/field-042.fits"}]).encode(),
                     "manifests/night-2026-01-01.json")
    emulation.wait()
    recorder = Recorder()
    recorder.install(monkeypatch)
    report = _event("survey-report-input.json")
    manifest = copy.deepcopy(report)
    manifest["state"] = _event("survey-manifest-start.json")
    runs = [("InspectFunction", _event("eventbridge-s3-object-created.json")),
            ("DetectFunction", _event("detect-small-input.json")),
            ("AlertsFunction", _event("alerts-input.json")),
            ("RecordFunction", _event("record-input.json")),
            ("LaterImagesFunction", _event("later-images-input.json")),
            ("ReopenAlertFunction", _event("reopen-alert-input.json")),
            ("QuarantineFunction", _event("quarantine-input.json")),
            ("ReportFunction", report), ("ReportFunction", manifest)]
    for function, payload in runs:
        module, attribute = emulation.handlers[emulation.names[function]].rsplit(".", 1)
        handler = getattr(importlib.import_module(module), attribute)
        context = LambdaContext(function_name=function, memory_limit_in_mb=1024, aws_request_id="r",
                                invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}")
        recorder.current = function
        try:
            handler(payload, context)
        finally:
            recorder.current = None
    return recorder


@pytest.mark.slow
def test_every_request_a_function_makes_is_allowed_on_its_resource_by_its_role(emulation, tmp_path, monkeypatch):
    recorder = _run_steps_as_each_function(emulation, tmp_path, monkeypatch)
    checked, denied = set(), []
    for function, service, operation, params in recorder.requests:
        action = iam_action(service, operation)
        statements = roles(emulation.parameters["Stage"])[f"{function}Role"]
        resources = _request_resources(service, params)
        if not resources and service in DATA_SERVICES:
            denied.append(f"{function}: {action}: this test cannot tell its resource (extend _request_resources)")
        for resource in resources:
            checked.add(function)
            if not allows(statements, action, resource):
                denied.append(f"{function}: {action} on {resource}")
    assert denied == []
    assert checked == set(function_steps()), "a function made no request: the sample events no longer reach it"
