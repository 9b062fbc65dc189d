"""An earlier image that arrives late re-opens the alert decisions of the later images it overlaps, on AWS as locally.

The night-2 image of a field (a transient in it) is uploaded first: nothing earlier to compare
with, so no ``new_source`` alert. The night-1 image of the same field (no transient) arrives
after: IngestImage's LaterImages/ReopenAlerts states decide night 2's alerts again, and the
transient's ``new_source`` alert is sent, once. The same two files through two ``skysift run``
invocations, in the same order, send the same alerts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from aws_support import PARAMETERS, ROOT, sky_file

pytestmark = pytest.mark.slow

REOPEN_ASL = json.loads((ROOT / "statemachine/ingest.asl.json").read_text())["States"]["Images"]["ItemProcessor"]["States"]


def _nights(tmp_path: Path) -> tuple[Path, Path]:
    """Night 1 and night 2 of one field; night 2 has a transient at pixel (150, 50)."""
    for night in ("night1", "night2"):
        (tmp_path / night).mkdir()
    night1 = sky_file(tmp_path / "night1" / "field.fits", seed=7)
    night2 = sky_file(tmp_path / "night2" / "field.fits", seed=7, night="2026-01-02")
    with fits.open(night2, mode="update") as hdul:
        y, x = np.mgrid[-4:5, -4:5]
        hdul[0].data[46:55, 146:155] += (3000 * np.exp(-(x**2 + y**2) / (2 * 1.3**2))).astype(np.float32)
    return night1, night2


def _key(alert: dict) -> tuple:
    """What an alert is about, whatever the image's location (its image_id, hence alert_id, differs)."""
    night = "night2" if "2026-01-02" in str(alert.get("obs_time") or alert.get("image_uri")) else "night1"
    return alert["rule"], night, round(alert["x"]), round(alert["y"])


def _local_alerts(files: list[Path], home: Path) -> list[dict]:
    """``skysift run FILE`` once per file, in order, on one home; the alert log."""
    from skysift.alerts.log import LogPublisher

    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT / "src")}
    for path in files:  # the emulated deployment's alert threshold (template parameter AlertHighSnr)
        done = subprocess.run([sys.executable, "-m", "skysift.cli.main", "--home", str(home), "run", "-j", "1",
                               "--min-snr-alert", str(PARAMETERS["AlertHighSnr"]), str(path)],
                              capture_output=True, text=True, timeout=600, env=env, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    return LogPublisher(home).read()


def test_an_earlier_night_uploaded_after_the_later_one_sends_the_transients_alert_once_as_skysift_run_does(
        emulation, tmp_path):
    night1, night2 = _nights(tmp_path)
    everything = emulation.subscribe_queue("everything")
    new_only = emulation.subscribe_queue("new-only", {"kind": ["new_source"]})

    emulation.upload(night2, "night-2026-01-02/field.fits")
    assert [e["status"] for e in emulation.wait()] == ["SUCCEEDED"]
    assert emulation.receive(new_only) == []  # nothing earlier to compare with
    emulation.upload(night1, "night-2026-01-01/field.fits")
    executions = emulation.wait()
    # EventBridge delivers night 1's event again: its execution re-opens night 2 again, and sends nothing
    first = next(e for e in executions if "night-2026-01-01" in e["input"])
    emulation.client("stepfunctions").start_execution(stateMachineArn=emulation.ingest_arn, input=first["input"])
    executions = emulation.wait()

    assert {e["status"] for e in executions} == {"SUCCEEDED"}
    [transient] = [json.loads(m["Message"]) for m in emulation.receive(new_only)]
    assert transient["rule"] == "new_source" and "night-2026-01-02" in transient["image_uri"]
    assert abs(transient["x"] - 150) < 1 and abs(transient["y"] - 50) < 1
    sent = [json.loads(m["Message"]) for m in emulation.receive(everything)]
    assert len(sent) == len({a["alert_id"] for a in sent}), "an alert was delivered twice"
    rows = emulation.read_table("alerts").to_pylist()
    assert sorted(a["alert_id"] for a in rows) == sorted(a["alert_id"] for a in sent)  # the table lists what was sent
    ledger = emulation.client("dynamodb").scan(TableName=emulation.names["AlertLedger"])["Items"]
    assert all(item["status"]["S"] == "COMPLETED" for item in ledger)

    local = _local_alerts([night2, night1], tmp_path / "home")
    assert sorted(map(_key, local)) == sorted(map(_key, sent))
    assert ("new_source", "night2", 150, 50) in {_key(a) for a in local}


def test_both_nights_uploaded_at_once_send_the_transients_alert_once(emulation, tmp_path):
    """Whichever execution records second re-opens what the other order could have missed."""
    night1, night2 = _nights(tmp_path)
    new_only = emulation.subscribe_queue("new-only", {"kind": ["new_source"]})

    emulation.upload(night2, "night-2026-01-02/field.fits")
    emulation.upload(night1, "night-2026-01-01/field.fits")
    executions = emulation.wait()

    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    [transient] = [json.loads(m["Message"]) for m in emulation.receive(new_only)]
    assert "night-2026-01-02" in transient["image_uri"] and abs(transient["x"] - 150) < 1


def test_the_later_images_are_decided_again_after_the_commit_and_a_failure_shows():
    assert REOPEN_ASL["Record"]["Next"] == "LaterImages"  # after the images row and footprints are written
    later = REOPEN_ASL["LaterImages"]
    assert later["Parameters"]["Payload"] == {"image_id.$": "$.record.image_id", "status.$": "$.record.status"}
    reopen = REOPEN_ASL["ReopenAlerts"]
    assert reopen["Type"] == "Map" and reopen["ItemsPath"] == "$.reopen.images" and reopen["MaxConcurrency"] == 1
    assert reopen["OutputPath"] == "$.record" and reopen["End"]  # the iteration's outcome is still the image's record
    retried = {e for r in reopen["ItemProcessor"]["States"]["ReopenAlert"]["Retry"] for e in r["ErrorEquals"]}
    assert "TransientError" in retried and "States.ALL" not in retried
    for name, state in (("LaterImages", later), ("ReopenAlerts", reopen)):  # as every step: to QuarantineImage,
        # which never overwrites the image's ok row, and fails the execution so that it shows
        assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": f"$.caught.{name}", "Next": "QuarantineImage"}]


def test_the_reach_of_an_earlier_image_is_the_one_skysift_run_uses():
    from skysift.aws import reopen
    from skysift.pipeline import survey

    assert reopen.HISTORY_MARGIN_DEG == survey.HISTORY_MARGIN_DEG
