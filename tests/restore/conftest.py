"""Restore fixtures: the S3 server (moto) of the backup tests, so restores run from an S3 target too."""

from tests.backup.conftest import s3_server

__all__ = ["s3_server"]
