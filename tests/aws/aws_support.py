"""Shared values and helpers of the AWS tests (a module of its own: test modules import it by
a name no other test folder uses, so pytest-xdist workers never confuse it with another conftest)."""

from __future__ import annotations

import json
from pathlib import Path

from sky_factory import write_sky

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

#: Each Batch job definition -> the module its command runs (through containers/entrypoint.sh;
#: tests/aws/test_containers.py runs them, tests/aws/test_aws_iam.py checks their roles).
JOB_ENTRYPOINTS = {"LargeJobDefinition": "skysift.aws.worker", "TimeLagJobDefinition": "skysift.aws.timelag_job"}

#: Settings of the emulated deployment (template parameters): alerts fire for SNR >= 200.
PARAMETERS = {"Stage": "dev", "AlertHighSnr": 200}


def sky_file(path: Path, *, seed: int = 7, size: int = 200, n_stars: int = 30, night: str = "2026-01-01",
             survey: str = "test", band: str = "r", center: tuple[float, float] | None = None) -> Path:
    """A small synthetic sky (deterministic bytes for a given seed) written to ``path``."""
    where = {} if center is None else {"center_ra": center[0], "center_dec": center[1]}
    return write_sky(path, size=size, n_stars=n_stars, n_galaxies=5, seed=seed,
                     header={"DATE-OBS": f"{night}T00:00:00", "FILTER": band, "SURVEY": survey}, **where)[0]


def received_alert_ids(session, queue_url: str) -> list[str]:
    """alert_ids of the SNS messages waiting in an SQS queue, in the order received; the queue is emptied."""
    sqs, out = session.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        out += [json.loads(json.loads(m["Body"])["Message"])["alert_id"] for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return out
