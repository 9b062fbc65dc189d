"""The whole AWS system of ``template.yaml`` on moto, in one process (``skysift emulate``).

Installed with the ``emulate`` extra and never part of the Lambda/Batch image; the runtime
modules of :mod:`skysift.aws` may not import it (checked by import-linter).

``emulate``       buckets, tables, topics and the real state machines on moto's Step Functions
``moto_patches``  the few places where moto's interpreter differs from AWS
"""
