"""skysift on AWS: adapters (S3 + Glue catalog, SNS alerts), the Step Functions steps,
the Batch worker entrypoint, and an emulation of the whole system on moto.

Nothing here does science: the steps call :mod:`skysift.pipeline` and
:mod:`skysift.alerts` and move their results through S3, Glue and SNS.
"""
