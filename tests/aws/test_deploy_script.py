"""``make deploy`` (scripts/deploy.py) as a user runs it: the worker image it builds and pushes
is the one the stack's Batch jobs are deployed with (run with --dry-run: no Docker here)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _commands(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/deploy.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False, env=env)


def _planned(*args: str) -> list[list[str]]:
    done = _commands("--dry-run", "--account", "123456789012", "--region", "eu-west-1", "--tag", "abc123", *args)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]


def _template_parameters() -> set[str]:
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return set(yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)["Parameters"])


def test_the_pushed_worker_image_is_the_one_the_stack_is_deployed_with():
    commands = _planned()
    build = next(c for c in commands if c[:2] == ["docker", "build"])
    push = next(c for c in commands if c[:2] == ["docker", "push"])
    deploy = next(c for c in commands if c[:2] == ["sam", "deploy"])
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/skysift-worker:abc123"
    assert build[build.index("-f") + 1] == "containers/Dockerfile" and (ROOT / "containers/Dockerfile").exists()
    assert build[build.index("-t") + 1] == uri == push[2]
    assert f"WorkerImageUri={uri}" in deploy
    assert "WorkerImageUri" in _template_parameters()
    order = [c[:2] for c in commands]
    assert order.index(["docker", "push"]) < order.index(["sam", "deploy"])  # the image exists before the stack needs it


def test_the_environment_overrides_from_samconfig_are_kept():
    deploy = next(c for c in _planned() if c[:2] == ["sam", "deploy"])
    assert {"Stage=dev", "SmallImageMaxPixels=16777216"} <= set(deploy)
    prod = next(c for c in _planned("--config-env", "prod") if c[:2] == ["sam", "deploy"])
    assert prod[prod.index("--config-env") + 1] == "prod" and "Stage=prod" in prod


def test_without_credentials_or_cli_it_says_what_to_give_in_one_line(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no aws CLI to look the account up with
    done = _commands("--dry-run", env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "give --account and --region" in done.stderr
