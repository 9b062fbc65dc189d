"""Build and push the worker image, then deploy the stack with it: ``make deploy``.

Every function of ``template.yaml`` is a container image that ``sam build`` builds and
``sam deploy --resolve-image-repos`` pushes; the two Batch jobs run the same image
(``containers/Dockerfile``) from the ``WorkerImageUri`` parameter, which SAM does not build.
This script does the whole of it in one command:

1. the ECR repository ``skysift-worker`` (created once: scan on push, immutable tags);
2. ``docker build -f containers/Dockerfile`` tagged with the commit (``-dirty-<time>`` when the
   tree has uncommitted changes), ``docker push``;
3. ``sam build``, then ``sam deploy --config-env ENV`` with ``WorkerImageUri`` added to the
   environment's ``parameter_overrides`` from ``samconfig.toml`` (the command line replaces that
   setting as a whole, so the file's overrides are passed again with it).

Needs Docker, the AWS CLI and credentials. ``--dry-run`` prints the commands instead of
running them (the account and region must then be given, or they are looked up with the CLI).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "skysift-worker"


def overrides_of(config_env: str, samconfig: Path = ROOT / "samconfig.toml") -> list[str]:
    """``Key=Value`` items of ``parameter_overrides`` for ``config_env`` in samconfig.toml."""
    config = tomllib.loads(samconfig.read_text())
    text = config.get(config_env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    return shlex.split(text)


def image_tag() -> str:
    """The commit the image is built from; unique again when the tree has changes (tags are immutable)."""
    commit = _output(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, check=False).returncode != 0
    return f"{commit}-dirty-{time.strftime('%Y%m%d%H%M%S')}" if dirty else commit


def plan(account: str, region: str, config_env: str, tag: str) -> list[list[str]]:
    """The commands, in order: repository, login, build, push, sam build, sam deploy."""
    registry = f"{account}.dkr.ecr.{region}.amazonaws.com"
    uri = f"{registry}/{REPOSITORY}:{tag}"
    overrides = [o for o in overrides_of(config_env) if not o.startswith("WorkerImageUri=")]
    return [
        ["sh", "-c", f"aws ecr describe-repositories --region {region} --repository-names {REPOSITORY} >/dev/null 2>&1"
                     f" || aws ecr create-repository --region {region} --repository-name {REPOSITORY}"
                     " --image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE"],
        ["sh", "-c", f"aws ecr get-login-password --region {region}"
                     f" | docker login --username AWS --password-stdin {registry}"],
        ["docker", "build", "--platform", "linux/amd64", "-f", "containers/Dockerfile", "-t", uri, "."],
        ["docker", "push", uri],
        ["sam", "build", "--config-env", config_env],
        ["sam", "deploy", "--config-env", config_env, "--region", region,
         "--parameter-overrides", *overrides, f"WorkerImageUri={uri}"],
    ]


def _output(command: list[str]) -> str:
    return subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-env", default="default", help="samconfig.toml environment (default, prod)")
    parser.add_argument("--account", help="AWS account id (default: aws sts get-caller-identity)")
    parser.add_argument("--region", help="AWS region (default: aws configure get region)")
    parser.add_argument("--tag", help="image tag (default: the commit)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        account = args.account or _output(["aws", "sts", "get-caller-identity", "--query", "Account", "--output", "text"])
        region = args.region or _output(["aws", "configure", "get", "region"])
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"deploy: cannot find the AWS account and region ({exc}); give --account and --region", file=sys.stderr)
        return 2
    for command in plan(account, region, args.config_env, args.tag or image_tag()):
        print("+ " + shlex.join(command), flush=True)
        if not args.dry_run and subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
            print(f"deploy: failed at: {shlex.join(command)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
