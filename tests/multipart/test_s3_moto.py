"""Against a real S3 API (moto in server mode on loopback): a small Gateway stub mints
pre-signed ``upload_part`` URLs with boto3 and finishes with ``complete_multipart_upload``;
the SDK's parts, headers and ETags must satisfy S3 itself."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import pytest_asyncio
from aiohttp import web
from botocore.config import Config
from moto.server import ThreadedMotoServer

from gateway_async import Gateway
from tests.conftest import TEST_KEY, serve_on_loopback

from .conftest import PART, quick_retries

BUCKET = "media"
DATA = os.urandom(2 * PART + 12_345)  # three parts


@pytest.fixture
def s3() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        client.close()
        server.stop()
        server._server.server_close()  # type: ignore[union-attr]  # stop() leaves it open


class GatewayStub:
    """init / parts / complete over S3 multipart uploads, as a real Gateway would do."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.uploads: dict[str, tuple[str, int]] = {}  # upload_id -> (S3 UploadId, size)
        self.completes: list[dict[str, Any]] = []

    def _urls(self, upload_id: str, numbers: list[int]) -> list[dict[str, Any]]:
        s3_id, _ = self.uploads[upload_id]
        params = {"Bucket": BUCKET, "Key": upload_id, "UploadId": s3_id}
        return [
            {
                "part_number": n,
                "upload_url": self.s3.generate_presigned_url(
                    "upload_part", Params={**params, "PartNumber": n}, ExpiresIn=900
                ),
            }
            for n in numbers
        ]

    async def init(self, request: web.Request) -> web.Response:
        body = await request.json()
        upload_id = f"upl_{len(self.uploads) + 1}"
        created = await asyncio.to_thread(
            self.s3.create_multipart_upload, Bucket=BUCKET, Key=upload_id
        )
        self.uploads[upload_id] = (created["UploadId"], body["size"])
        count = -(-body["size"] // PART)
        ticket = {
            "upload_id": upload_id,
            "method": "PUT",
            "headers": {},  # S3 signs no headers for parts
            "expires_at": "2099-01-01T00:00:00Z",
            "part_size": PART,
            "parts": await asyncio.to_thread(self._urls, upload_id, list(range(1, count + 1))),
        }
        return web.json_response(ticket, status=201)

    async def complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.completes.append(body)
        upload_id = body["upload_id"]
        s3_id, size = self.uploads[upload_id]
        parts = [{"ETag": p["etag"], "PartNumber": p["part_number"]} for p in body["parts"]]
        await asyncio.to_thread(
            self.s3.complete_multipart_upload,
            Bucket=BUCKET,
            Key=upload_id,
            UploadId=s3_id,
            MultipartUpload={"Parts": parts},
        )
        media = {
            "media_ref": f"mref_{upload_id}",
            "size": size,
            "content_type": "application/octet-stream",
            "sha256": hashlib.sha256(await asyncio.to_thread(self.read, upload_id)).hexdigest(),
            "filename": "f.bin",
        }
        return web.json_response(media)

    def read(self, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return data


@pytest_asyncio.fixture
async def stub(s3: Any) -> AsyncIterator[tuple[GatewayStub, str]]:
    gateway = GatewayStub(s3)
    app = web.Application()
    app.router.add_post("/api/media/upload/init", gateway.init)
    app.router.add_post("/api/media/upload/complete", gateway.complete)
    runner, url = await serve_on_loopback(app)
    try:
        yield gateway, url
    finally:
        await runner.cleanup()


async def test_parts_land_byte_exact_in_s3(stub: tuple[GatewayStub, str], tmp_path: Path) -> None:
    gateway, url = stub
    path = tmp_path / "scan.tiff"
    path.write_bytes(DATA)
    async with Gateway(api_key=TEST_KEY, base_url=url, retry=quick_retries()) as gw:
        ref = await gw.media.upload(path, part_concurrency=3)
    assert ref.sha256 == hashlib.sha256(DATA).hexdigest()
    assert await asyncio.to_thread(gateway.read, "upl_1") == DATA
    (complete,) = gateway.completes
    assert [p["part_number"] for p in complete["parts"]] == [1, 2, 3]
    assert all(p["etag"].startswith('"') for p in complete["parts"])  # as S3 sent it
    assert complete["parts"][2]["sha256"] == hashlib.sha256(DATA[2 * PART :]).hexdigest()
