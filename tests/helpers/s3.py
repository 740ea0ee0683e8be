"""moto's S3 server on 127.0.0.1 for tests of the inference log's object store.

:func:`moto_s3` starts it (a free port) with one bucket; :meth:`S3.env` is the environment
that points pyarrow, boto3 and loopline at it with dummy credentials and reaches nothing
else (no AWS config files, no instance metadata, proxies refused except for 127.0.0.1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUCKET = "loopline-logs"
REMOTE_BUCKET = "loopline-remote"  # the DVC remote's (tests of remotes and of CI)
DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens


@dataclass
class S3:
    endpoint: str
    client: object  # boto3 S3 client
    server: object  # moto's ThreadedMotoServer
    bucket: str = BUCKET

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """:func:`local_only_env` pointed at this server (``AWS_ENDPOINT_URL_S3``)."""
        return {**local_only_env(base), "AWS_ENDPOINT_URL_S3": self.endpoint}


def local_only_env(base: dict[str, str] | None = None, *,
                   credentials: bool = True) -> dict[str, str]:
    """The environment of dvc / loopline / pyarrow: dummy credentials (unless
    ``credentials`` is false), no AWS config files or instance metadata, and proxies that
    refuse everything but 127.0.0.1, so a request meant for real AWS fails at the proxy
    instead of leaving the machine."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.upper().startswith("AWS_") and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update({
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/aws/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws/credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY,
        "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return env


def _start(port: int = 0) -> object:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


@contextmanager
def moto_s3(bucket: str = BUCKET) -> Iterator[S3]:
    """moto's S3 server in this process on 127.0.0.1 (a free port), with one bucket."""
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = _start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=bucket)
        yield S3(endpoint, client, server, bucket)
    finally:
        server.stop()


def stop(s3: S3) -> None:
    """Take the store down (the port refuses connections); :func:`restart` brings it back
    on the same port with its objects (moto keeps them in this process)."""
    s3.server.stop()


def restart(s3: S3) -> None:
    port = int(s3.endpoint.rsplit(":", 1)[1])
    s3.server = _start(port)


def add_s3_remote(root: Path, s3: S3, prefix: str, env: dict[str, str], *local: str) -> str:
    """Make ``s3://<bucket>/<prefix>`` on this server the default DVC remote of ``root``
    (``--local`` in ``local``: in .dvc/config.local, never committed); returns its URL."""
    from tests.helpers import BIN
    from tests.helpers.commands import sh

    url = f"s3://{s3.bucket}/{prefix}"
    for args in (("add", *local, "-d", "s3", url),
                 ("modify", *local, "s3", "endpointurl", s3.endpoint)):
        sh(str(BIN / "dvc"), "remote", *args, cwd=root, env=env, timeout=300)
    return url
