"""keyledger installed the way a user installs it: ``python -m build`` makes a wheel from a copy of the
checkout, a fresh virtual environment outside the checkout installs it (dependencies from the package
index), and its ``keyledger serve`` answers boto3, serves /docs and the console from the files the wheel
shipped. One test: it is slow (a build and an install)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET, ROOT, free_port

SKIP = shutil.ignore_patterns(".git", ".venv", "tmp", "dist", "build", "*.egg-info", "keyledger-data", "__pycache__",
                              ".pytest_cache", ".hypothesis")


def _run(*command: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def test_wheel_installs_and_serves_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_", "PYTHON"))}
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    _run(sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(source), cwd=tmp_path, env=env)
    wheel = next((tmp_path / "dist").glob("keyledger-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("api/console/templates/key.html", "api/static/console/console.css",
                    "api/static/swagger-ui/swagger-ui-bundle.js", "api/static/swagger-ui/LICENSE",
                    "infrastructure/data/aws-kms-prices.json"):
        assert shipped in names, shipped
    assert not any(name.startswith("tests/") for name in names)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path, env=env)
    _run(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel), cwd=tmp_path, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    server_env = {**env, "KEYLEDGER_DATA_DIR": str(elsewhere / "data"), "KEYLEDGER_PORT": str(port),
                  "KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID, "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET,
                  "KEYLEDGER_LOG_LEVEL": "warning"}
    version = subprocess.run([str(venv / "bin" / "keyledger"), "--version"], cwd=elsewhere, env=server_env,
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("keyledger 0.") and "not installed" not in version.stdout
    log = (elsewhere / "server.log").open("wb")
    server = subprocess.Popen([str(venv / "bin" / "keyledger"), "serve"], cwd=elsewhere, env=server_env,
                              stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, (elsewhere / "server.log").read_text()
            try:
                if httpx.get(endpoint + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ADMIN_KEY_ID,
                           aws_secret_access_key=ADMIN_SECRET, config=Config(retries={"total_max_attempts": 1}))
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"from the wheel")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"from the wheel"
        assert httpx.get(endpoint + "/docs").status_code == 200
        assert httpx.get(endpoint + "/static/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert "Sign in to keyledger" in httpx.get(endpoint + "/console/signin").text
        where = subprocess.run([str(venv / "bin" / "python"), "-c", "import api; print(api.__file__)"], cwd=elsewhere,
                               env=server_env, capture_output=True, text=True, timeout=60).stdout
        assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
