"""skysift on AWS: adapters (S3 + Glue catalog, SNS alerts), the Step Functions steps,
the Batch worker entrypoint; :mod:`skysift.aws.emulation` runs the whole system on moto.

Nothing here does science: the steps call :mod:`skysift.pipeline.image` and
:mod:`skysift.alerts` and move their results through S3, Glue and SNS.
"""
