"""Resources: the backup bucket and the Cloudflare API credentials, configured from patina.yaml.

Secrets reach Dagster only as `EnvVar`s, resolved when a run starts: definitions load without them, a run
that needs one and lacks it fails with the variable's name, and the value never shows in the UI.
"""

from __future__ import annotations

import dagster as dg
from dagster_aws.s3 import S3Resource

from ..backup import Cloudflare
from ..config import PatinaConfig
from ..encryption import DEFAULT_IDENTITY_ENV, AgeKeys
from ..storage import BackupStore, Bucket, open_bucket


class BucketResource(dg.ConfigurableResource):
    """Where backups live: a local directory, or an S3-compatible bucket such as Cloudflare R2."""

    local_path: str | None = None
    s3: S3Resource | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    multipart_part_size: int = 16 * 1024 * 1024
    #: ``encryption.recipients`` (public keys: not secrets) and the NAME of the variable holding the identity,
    #: which the run's process reads when it opens a backup; the identity never passes through Dagster.
    age_recipients: list[str] = []
    age_identity_env: str = DEFAULT_IDENTITY_ENV

    def bucket(self) -> Bucket:
        if self.s3 is None:
            return open_bucket(local_path=self.local_path)
        # The client is built from the S3Resource's settings (by storage's own factory, which relaxes
        # botocore's checksum defaults: R2 has trouble with the CRC32 checksums recent boto3 sends).
        return open_bucket(
            s3_bucket=self.s3_bucket,
            endpoint_url=self.s3.endpoint_url,
            region=self.s3.region_name,
            access_key_id=self.s3.aws_access_key_id,
            secret_access_key=self.s3.aws_secret_access_key,
            prefix=self.s3_prefix,
            part_size=self.multipart_part_size,
        )

    def age_keys(self) -> AgeKeys:
        """The recipients new backups are encrypted to, and where the identity is read from when needed.  (Not
        `keys`: Dagster treats a resource as a mapping and calls its keys().)"""
        return AgeKeys(self.age_recipients, self.age_identity_env)

    def store(self) -> BackupStore:
        return BackupStore(self.bucket(), self.age_keys())


class CloudflareResource(dg.ConfigurableResource):
    """The Cloudflare REST API: its base URL and an API token with D1 read permission."""

    api_url: str
    api_token: str | None = None
    requests_per_5_minutes: int = 600

    def credentials(self) -> Cloudflare:
        return Cloudflare(
            api_url=self.api_url, token=self.api_token, requests_per_5_minutes=self.requests_per_5_minutes
        )


def resources(config: PatinaConfig) -> dict[str, dg.ConfigurableResource]:
    """The resources every Patina asset, check and sensor shares."""
    bucket = config.bucket
    encryption = {
        "age_recipients": list(config.encryption.recipients),
        "age_identity_env": config.encryption.identity_file_env,
    }
    if bucket.s3 is not None:
        s3 = bucket.s3
        bucket_resource = BucketResource(
            s3=S3Resource(
                endpoint_url=s3.endpoint_url,
                region_name=s3.region,
                aws_access_key_id=dg.EnvVar(s3.access_key_id_env),
                aws_secret_access_key=dg.EnvVar(s3.secret_access_key_env),
            ),
            s3_bucket=s3.bucket,
            s3_prefix=s3.prefix,
            multipart_part_size=s3.multipart_part_size_bytes,
            **encryption,
        )
    else:
        bucket_resource = BucketResource(local_path=str(bucket.local.path), **encryption)
    needs_token = any(db.is_d1 for db in config.databases) or any(not f.api_token_env for f in config.fleets)
    cloudflare = CloudflareResource(
        api_url=config.cloudflare.api_url,
        requests_per_5_minutes=config.cloudflare.requests_per_5_minutes,
        api_token=dg.EnvVar(config.cloudflare.api_token_env) if needs_token else None,
    )
    return {"bucket": bucket_resource, "cloudflare": cloudflare}
