"""Deployment configuration, read once from the environment the template sets.

Names and ARNs never appear in code: ``template.yaml`` puts them in every function's
and the Batch job's environment (``SKYSIFT_*``), and the entrypoints build one
:class:`AwsConfig` and one :class:`~skysift.settings.Settings` from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from skysift.errors import ConfigError
from skysift.settings import Settings

__all__ = ["SETTINGS_SECTIONS", "AwsConfig", "settings_from_env"]

#: Settings sections that ``SKYSIFT_<SECTION>__<FIELD>`` variables may set.
SETTINGS_SECTIONS = ("background", "detection", "photometry", "alerts", "limits", "wcs")


class AwsConfig(BaseModel):
    """Where things are: buckets, Glue database, topic, ledger, routing threshold."""

    model_config = ConfigDict(frozen=True)

    stage: str = "dev"
    raw_bucket: str | None = None
    catalog_bucket: str
    glue_database: str
    alert_topic_arn: str | None = None
    alert_ledger_table: str | None = None
    small_image_max_pixels: int = 16_777_216
    workers: int = 1  # processes for the tiled large-image path (the Batch job's vCPUs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AwsConfig:
        env = os.environ if environ is None else environ
        try:
            return cls(
                stage=env.get("SKYSIFT_STAGE", "dev"),
                raw_bucket=env.get("SKYSIFT_RAW_BUCKET"),
                catalog_bucket=env["SKYSIFT_CATALOG_BUCKET"],
                glue_database=env["SKYSIFT_GLUE_DATABASE"],
                alert_topic_arn=env.get("SKYSIFT_ALERT_TOPIC_ARN"),
                alert_ledger_table=env.get("SKYSIFT_ALERT_LEDGER_TABLE"),
                small_image_max_pixels=int(env.get("SKYSIFT_SMALL_IMAGE_MAX_PIXELS", 16_777_216)),
                workers=max(1, int(float(env.get("SKYSIFT_WORKERS", "1")))),
            )
        except KeyError as exc:
            raise ConfigError(f"environment variable {exc.args[0]} is not set (the template sets it)") from exc


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings with overrides from ``SKYSIFT_<SECTION>__<FIELD>`` variables (template parameters)."""
    env = os.environ if environ is None else environ
    overrides = {}
    for name, value in env.items():
        if not name.startswith("SKYSIFT_") or "__" not in name:
            continue
        section, _, field = name[len("SKYSIFT_"):].lower().partition("__")
        if section in SETTINGS_SECTIONS and field:
            overrides[f"{section}__{field}"] = value
    return Settings.load(home="/tmp/skysift", **overrides)
