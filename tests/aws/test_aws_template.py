"""template.yaml, the ASL files and the code agree with each other, and the template is sound."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from configparser import ConfigParser

import pytest
from aws_support import ROOT, THIRD_PARTY_WARNINGS

from skysift.aws.glue import glue_columns, partition_keys
from skysift.aws.template import load_template, resources_of_type

pytestmark = [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

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


def _tasks(states: dict) -> dict:
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            found[name] = state
        if state["Type"] == "Map":
            found.update(_tasks(state["ItemProcessor"]["States"]))
    return found


def test_ingest_tasks_have_timeouts_retry_transient_errors_and_catch_to_quarantine():
    definition = json.loads((ROOT / "statemachine/ingest.asl.json").read_text())
    for name, task in _tasks(definition["States"]).items():
        assert "TimeoutSeconds" in task, name
        retried = {e for r in task.get("Retry", []) for e in r["ErrorEquals"]}
        if ":lambda:" in task["Resource"]:  # Quarantine retries everything: its record must get written
            assert retried >= TRANSIENT_LAMBDA_ERRORS or (name == "Quarantine" and retried == {"States.ALL"}), name
        assert not retried & {"States.TaskFailed", "truncated", "not_fits"} or name == "Quarantine", name
        if name != "Quarantine":
            assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Quarantine"}], name


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


def test_buckets_are_encrypted_private_tls_only_and_notify_eventbridge():
    buckets = resources_of_type(TEMPLATE, "AWS::S3::Bucket")
    policies = {p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
                for p in resources_of_type(TEMPLATE, "AWS::S3::BucketPolicy").values()}
    assert set(buckets) == {"RawBucket", "CatalogBucket"}
    for name, spec in buckets.items():
        p = spec["Properties"]
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert all(p["PublicAccessBlockConfiguration"].values())
        assert p["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
        [statement] = policies[name]["Statement"]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_iam_is_least_privilege():
    text = (ROOT / "template.yaml").read_text()
    assert "FullAccess" not in text
    actions = re.findall(r"Action: *\[?([^\]\n]+)", text)
    for action in actions:
        for item in re.split(r",\s*", action):
            item = item.strip().strip('"')
            assert not item.endswith(":*") or item == "s3:*", item  # s3:* appears only in the TLS Deny
    assert text.count('Action: "s3:*"') == 2


def test_upload_rule_matches_fits_suffixes_of_the_raw_bucket_only():
    pattern = MACHINES["IngestImageStateMachine"]["Properties"]["Events"]["FitsUploaded"]["Properties"]["Pattern"]
    suffixes = {s["suffix"].lower() for s in pattern["detail"]["object"]["key"]}
    assert suffixes == {".fits", ".fits.gz", ".fz"}
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "RawBucket"}]


def test_bucket_policy_refuses_requests_without_tls():
    from botocore.exceptions import ClientError

    from skysift.aws.emulate import Emulation

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

    from skysift.aws.emulate import Emulation

    config, environment = copy.deepcopy(default_user_config), dict(os.environ)
    with Emulation(ROOT, parameters={"Stage": "dev"}) as aws:
        assert os.environ["AWS_ENDPOINT_URL"] == aws.server.url
        assert default_user_config["stepfunctions"] == {"execute_state_machine": True}
    assert default_user_config == config
    assert dict(os.environ) == environment
