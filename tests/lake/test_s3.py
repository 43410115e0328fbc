"""An s3:// warehouse (a local moto S3 server): the pipeline writes through pyiceberg."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time

import pytest

import workbench as wb
from workbench.errors import QueryError
from workbench.settings import load_settings
from workbench.stores import close_all

pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")


@pytest.fixture
def s3_endpoint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="lake")
    yield url
    proc.terminate()
    proc.wait(10)


def test_pipeline_writes_to_an_s3_warehouse(tmp_path, s3_endpoint):
    settings = load_settings(home=tmp_path / "home", warehouse="s3://lake/wb", s3_endpoint=s3_endpoint,
                             s3_access_key_id="testing", s3_secret_access_key="testing", progress=False)
    try:
        ws = wb.create_org("acme", "Acme", settings=settings)
        end = dt.date(2026, 10, 10)
        ws.ingest("synthetic", end - dt.timedelta(days=2), end, progress=False)
        result = ws.transform(progress=False)
        assert result.rows_in == result.rows_silver + result.rows_quarantined > 0
        assert ws.table("gold.performance_daily").height > 0
        assert not (tmp_path / "home" / "warehouse").exists()
        objects = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                               aws_secret_access_key="testing", region_name="us-east-1"
                               ).list_objects_v2(Bucket="lake", Prefix="wb/gold/")
        assert objects["KeyCount"] > 0
        with pytest.raises(QueryError, match="reads local warehouses only"):
            ws.query("SELECT count() FROM gold.performance_daily")
    finally:
        close_all()
