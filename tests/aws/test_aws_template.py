"""template.yaml, the ASL files and the code agree with each other, and the template is sound."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from configparser import ConfigParser

import pytest
from aws_support import ROOT

from skysift.aws.glue import glue_columns, partition_keys
from skysift.aws.template import load_template, resources_of_type

TEMPLATE = load_template(ROOT / "template.yaml")
MACHINES = resources_of_type(TEMPLATE, "AWS::Serverless::StateMachine")
TRANSIENT_LAMBDA_ERRORS = {"Lambda.ServiceException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"}


def test_cfn_lint_passes():
    import cfnlint.api

    matches = cfnlint.api.lint_file(ROOT / "template.yaml")
    assert [str(m) for m in matches] == []


@pytest.mark.slow
def test_sam_validate_lint_passes():
    sam = ROOT / ".venv" / "bin" / "sam"
    if not sam.exists():
        sam = sys.executable.replace("python", "sam")
    result = subprocess.run([str(sam), "validate", "--lint", "--region", "us-east-1"], cwd=ROOT, capture_output=True,
                            text=True, env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.parametrize("table", ["sources", "images", "alerts"])
def test_glue_tables_in_the_template_match_the_table_schemas(table):
    [spec] = [s for s in resources_of_type(TEMPLATE, "AWS::Glue::Table").values()
              if s["Properties"]["TableInput"]["Name"] == table]
    table_input = spec["Properties"]["TableInput"]
    columns = [{"Name": c["Name"], "Type": c["Type"]} for c in table_input["StorageDescriptor"]["Columns"]]
    assert columns == glue_columns(table), "run: python -m skysift.aws.glue template.yaml"
    assert table_input["PartitionKeys"] == partition_keys()


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_substitution_in_the_asl_is_given_by_the_template_and_used(machine):
    properties = MACHINES[machine]["Properties"]
    text = (ROOT / properties["DefinitionUri"]).read_text()
    json.loads(text)  # valid JSON before substitution, for every tool that reads it
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
    given = set(properties["DefinitionSubstitutions"])
    assert used == given
    for name in given - {"Partition"}:  # names follow the template's resources: InspectFunctionArn -> InspectFunction
        resource = re.sub(r"(Arn|Name)$", "", name)
        assert resource in TEMPLATE["Resources"] or resource in TEMPLATE["Parameters"], name


def _tasks(states: dict, caught: bool = True) -> dict:
    """Task states by name; with ``caught``, only those that catch for themselves (not the tasks of a
    Map inside the per-image Map: that Map catches for them)."""
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            found[name] = state
        if state["Type"] == "Map" and (not caught or "Catch" not in state):
            found.update(_tasks(state["ItemProcessor"]["States"], caught))
        elif state["Type"] == "Map" and name != "Images":  # a Map that catches like a task
            found[name] = state
    return found


def test_ingest_tasks_have_timeouts_retry_transient_errors_and_catch_to_quarantine():
    definition = json.loads((ROOT / "statemachine/ingest.asl.json").read_text())
    per_image = definition["States"]["Images"]["ItemProcessor"]["States"]
    quarantines = {"Quarantine", "QuarantineImage"}
    for name, task in _tasks(definition["States"], caught=False).items():  # every task: timeouts, retries
        if task["Type"] != "Task":
            continue
        assert "TimeoutSeconds" in task, name
        retried = {e for r in task.get("Retry", []) for e in r["ErrorEquals"]}
        if ":lambda:" in task["Resource"]:
            assert retried >= TRANSIENT_LAMBDA_ERRORS | {"TransientError"} or (
                name in quarantines and retried == {"States.ALL"}), name
    for name, task in _tasks(definition["States"]).items():
        if task["Type"] == "Map":  # ReopenAlerts: catches for its task
            assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": f"$.caught.{name}",
                                      "Next": "QuarantineImage"}], name
            continue
        assert "TimeoutSeconds" in task, name
        retried = {e for r in task.get("Retry", []) for e in r["ErrorEquals"]}
        if ":lambda:" in task["Resource"]:  # Quarantine retries everything: its record must get written
            assert retried >= TRANSIENT_LAMBDA_ERRORS | {"TransientError"} or (
                name in quarantines and retried == {"States.ALL"}), name
        assert not retried & {"States.TaskFailed", "PermanentError", "truncated", "not_fits"} or name in quarantines, name
        for retrier in task.get("Retry", []):  # backoff with full jitter, capped
            assert retrier["BackoffRate"] > 1 and retrier["JitterStrategy"] == "FULL", name
        if name not in quarantines:  # each Catch keeps what failed where: $.caught.<State>; an image's, its own
            assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": f"$.caught.{name}",
                                      "Next": "QuarantineImage" if name in per_image else "Quarantine"}], name


def test_ingest_runs_the_steps_once_per_image_and_fails_with_the_first_failed_image():
    definition = json.loads((ROOT / "statemachine/ingest.asl.json").read_text())
    states = definition["States"]
    images = states["Images"]
    assert states["Inspect"]["Next"] == "Images" and images["ItemsPath"] == "$.hdus"
    assert images["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE" and 1 <= images["MaxConcurrency"] <= 4
    assert set(images["ItemProcessor"]["States"]) == {"InspectImage", "Route", "DetectSmall", "DetectLarge", "Alerts",
                                                      "Record", "LaterImages", "ReopenAlerts", "QuarantineImage"}
    assert images["ItemProcessor"]["States"]["QuarantineImage"]["End"] is True  # the other images go on
    assert not set(images["ItemProcessor"]["States"]) & set(states)  # state names are unique in a state machine
    assert states["ImageFailed"]["Type"] == states["Quarantined"]["Type"] == "Fail"


def test_every_function_handler_exists_in_functions():
    for name, spec in resources_of_type(TEMPLATE, "AWS::Serverless::Function").items():
        handler = spec["Properties"]["ImageConfig"]["Command"][0]
        module, attribute = handler.rsplit(".", 1)
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), name
        spec_ = importlib.util.spec_from_file_location(f"handler_{name}", path)
        loaded = importlib.util.module_from_spec(spec_)
        spec_.loader.exec_module(loaded)
        assert callable(getattr(loaded, attribute, None)), name
        assert spec["Metadata"]["Dockerfile"] == "containers/Dockerfile", name


def test_buckets_are_encrypted_private_tls_only_versioned_and_logged():
    buckets = resources_of_type(TEMPLATE, "AWS::S3::Bucket")
    policies = {p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
                for p in resources_of_type(TEMPLATE, "AWS::S3::BucketPolicy").values()}
    assert set(buckets) == {"RawBucket", "CatalogBucket", "AccessLogBucket"}
    for name, spec in buckets.items():
        p = spec["Properties"]
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert all(p["PublicAccessBlockConfiguration"].values())
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert any("NoncurrentVersionExpiration" in rule for rule in p["LifecycleConfiguration"]["Rules"]), name
        deny = policies[name]["Statement"][0]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert all(s["Effect"] == "Deny" or s["Principal"] == {"Service": "logging.s3.amazonaws.com"}
                   for s in policies[name]["Statement"]), name
    for name in ("RawBucket", "CatalogBucket"):  # the buckets the steps read and write
        p = buckets[name]["Properties"]
        assert p["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
        assert p["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}


def test_iam_is_least_privilege():
    text = (ROOT / "template.yaml").read_text()
    assert "FullAccess" not in text
    actions = re.findall(r"Action: *\[?([^\]\n]+)", text)
    for action in actions:
        for item in re.split(r",\s*", action):
            item = item.strip().strip('"')
            # s3:* appears only in the TLS Deny, kms:* only for the account in the key policy
            assert not item.endswith(":*") or item in ("s3:*", "kms:*"), item
    assert text.count('Action: "s3:*"') == 3
    assert text.count('Action: "kms:*"') == 1


def test_upload_rule_matches_the_fits_suffixes_of_local_mode_in_any_case_on_the_raw_bucket_only():
    from skysift.io.storage import FITS_SUFFIXES

    pattern = MACHINES["IngestImageStateMachine"]["Properties"]["Events"]["FitsUploaded"]["Properties"]["Pattern"]
    suffixes = [s["suffix"]["equals-ignore-case"] for s in pattern["detail"]["object"]["key"]]
    assert sorted(suffixes) == sorted(FITS_SUFFIXES)  # local mode lower-cases names before matching
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "RawBucket"}]


def test_bucket_policy_refuses_requests_without_tls():
    from botocore.exceptions import ClientError

    from skysift.aws.emulation.emulate import Emulation

    with Emulation(ROOT, parameters={"Stage": "dev"}, bucket_policies=True) as aws, \
            pytest.raises(ClientError) as refused:
        aws.client("s3").put_object(Bucket=aws.raw_bucket, Key="x.fits", Body=b"x")  # the endpoint is plain HTTP
    assert refused.value.response["Error"]["Code"] in ("AccessDenied", "403")


def test_worker_image_configures_astropy_for_a_read_only_filesystem():
    from astropy.utils import data, iers

    config = ConfigParser()
    config.read(ROOT / "containers/astropy.cfg")
    assert config["utils.iers.iers"]["auto_download"] == "False"
    assert config["utils.data"]["allow_internet"] == "False"
    for section, module in (("utils.iers.iers", iers.conf), ("utils.data", data.conf)):
        for key in config[section]:
            assert hasattr(module, key), (section, key)
    dockerfile = (ROOT / "containers/Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:" in dockerfile
    assert "ASTROPY_CONFIGDIR" in dockerfile and "containers/astropy.cfg" in dockerfile
    entrypoint = (ROOT / "containers/entrypoint.sh").read_text()
    assert "skysift.aws.worker" in entrypoint and "/lambda-entrypoint.sh" in entrypoint


def test_every_sample_event_is_used_by_a_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests/aws").glob("test_*.py"))
    for path in (ROOT / "events").glob("*.json"):
        assert path.name in tests, path.name


def test_emulation_leaves_moto_and_the_environment_as_it_found_them():
    import copy
    import os

    from moto.core.config import default_user_config

    from skysift.aws.emulation.emulate import Emulation

    config, environment = copy.deepcopy(default_user_config), dict(os.environ)
    with Emulation(ROOT, parameters={"Stage": "dev"}) as aws:
        assert os.environ["AWS_ENDPOINT_URL"] == aws.server.url
        assert default_user_config["stepfunctions"] == {"execute_state_machine": True}
    assert default_user_config == config
    assert dict(os.environ) == environment


def _environment_refs(template: dict) -> dict[str, str]:
    """``SKYSIFT_*`` variable -> the template parameter it is set from, over every function and job."""
    refs: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            for name, value in node.get("Variables", {}).items():  # Globals and functions
                if isinstance(value, dict) and "Ref" in value:
                    refs[name] = value["Ref"]
            if isinstance(node.get("Name"), str) and isinstance(node.get("Value"), dict) and "Ref" in node["Value"]:
                refs[node["Name"]] = node["Value"]["Ref"]  # Batch container environment
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in TEMPLATE.items() if k in ("Globals", "Resources")})
    return refs


def test_parameter_defaults_equal_the_local_settings_defaults():
    """The same file gives the same catalog locally and on AWS: a parameter that sets a setting
    (``SKYSIFT_<SECTION>__<FIELD>``) defaults to that setting's local default."""
    from skysift.aws.config import SETTINGS_SECTIONS
    from skysift.settings import Settings

    defaults = Settings()
    mirrored = {}
    for variable, parameter in _environment_refs(TEMPLATE).items():
        section, _, field = variable.removeprefix("SKYSIFT_").lower().partition("__")
        if section in SETTINGS_SECTIONS and field and parameter in TEMPLATE["Parameters"]:
            mirrored[parameter] = getattr(getattr(defaults, section), field)
    assert "DetectionThresholdSigma" in mirrored and len(mirrored) >= 5
    for parameter, local in mirrored.items():
        assert float(TEMPLATE["Parameters"][parameter]["Default"]) == float(local), parameter


#: SAM policy templates and IAM actions that can create or replace an S3 object.
S3_WRITE_POLICY_TEMPLATES = {"S3CrudPolicy", "S3WritePolicy", "S3FullAccessPolicy"}
S3_WRITE_ACTIONS = re.compile(r"^s3:(\*|Put.*|Copy.*|RestoreObject|CreateMultipartUpload|CompleteMultipartUpload)$")


def _bucket_names_in(node, buckets: set[str]) -> set[str]:
    """Logical ids of the template's buckets that ``node`` (a Resource value) refers to; all of them for '*'."""
    text = json.dumps(node)
    if '"*"' in text or '"arn:aws:s3:::*' in text:
        return set(buckets)
    return {b for b in buckets if re.search(rf'"(Ref|Fn::GetAtt)": \[?"{b}"|\$\{{{b}(\.Arn)?\}}', text)}


def _writable_buckets(template: dict) -> set[str]:
    """Buckets some function, job or state machine of the template is allowed to write to."""
    buckets = set(resources_of_type(template, "AWS::S3::Bucket"))
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for policy in S3_WRITE_POLICY_TEMPLATES & node.keys():
                found.update(_bucket_names_in(node[policy], buckets))
            if node.get("Effect") == "Allow" and "Action" in node:
                actions = node["Action"] if isinstance(node["Action"], list) else [node["Action"]]
                if any(S3_WRITE_ACTIONS.match(a) for a in actions if isinstance(a, str)):
                    found.update(_bucket_names_in(node.get("Resource", "*"), buckets))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(template["Resources"])
    return found


def _s3_trigger_patterns(template: dict) -> list[dict]:
    """The event patterns of every EventBridge rule (SAM ``EventBridgeRule`` events and
    ``AWS::Events::Rule``) that S3 events can match."""
    patterns = []
    for spec in template["Resources"].values():
        for event in spec.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") == "EventBridgeRule":
                patterns.append(event["Properties"]["Pattern"])
        if spec["Type"] == "AWS::Events::Rule" and "EventPattern" in spec["Properties"]:
            patterns.append(spec["Properties"]["EventPattern"])
    return [p for p in patterns if "source" not in p or "aws.s3" in p["source"]]


def test_no_output_is_written_where_an_upload_trigger_listens():
    """No recursion on AWS: every bucket an S3 trigger rule listens to is one nothing in the
    stack may write to (outputs, quarantine records, cut-outs, summaries and reports all go to
    buckets no rule watches), judged from the IAM the template grants."""
    buckets = set(resources_of_type(TEMPLATE, "AWS::S3::Bucket"))
    patterns = _s3_trigger_patterns(TEMPLATE)
    assert patterns, "the template has no S3 upload trigger: this test no longer tests anything"
    watched = set()
    for pattern in patterns:
        names = pattern.get("detail", {}).get("bucket", {}).get("name")
        watched |= set(buckets) if names is None else _bucket_names_in(names, buckets)
    writable = _writable_buckets(TEMPLATE)
    assert "CatalogBucket" in writable  # the outputs' bucket is seen as written (the test can see writes)
    assert not watched & writable, f"the stack may write to {sorted(watched & writable)}, which a trigger rule watches"

