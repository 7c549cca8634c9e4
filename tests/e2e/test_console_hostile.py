"""Hostile requests to the console: whatever a browser or a script sends, the answer is a 3xx or 4xx (never a
5xx), nothing is signed in, and the server goes on serving."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET, Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    factory = ServerFactory("sqlite", tmp_path)
    try:
        yield factory.start("console-hostile")
    finally:
        factory.close()


def test_hostile_console_requests_never_get_a_5xx(server: Server) -> None:
    anonymous = httpx.Client(base_url=server.endpoint)
    csrf = re.search(r'name="csrf" value="([^"]+)"', anonymous.get("/console/signin").text).group(1)
    signed_in = httpx.Client(base_url=server.endpoint)
    token = re.search(r'name="csrf" value="([^"]+)"', signed_in.get("/console/signin").text).group(1)
    signed_in.post("/console/signin", data={"csrf": token, "access_key_id": ADMIN_KEY_ID, "secret": ADMIN_SECRET})
    key_id = server.client().create_key()["KeyMetadata"]["KeyId"]
    long = "x" * 5000
    answers = []
    for client in (anonymous, signed_in):
        for path in ("/console/keys?state=" + long, "/console/keys/" + long, f"/console/keys/{key_id}?at={long}",
                     f"/console/keys/{key_id}?at=not-a-time", f"/console/keys/{key_id}?version=99999999999999999999",
                     f"/console/keys/{key_id}/access?operation=Nope", f"/console/keys/{key_id}/access?at=-99999999w",
                     "/console/audit?marker=-1", "/console/audit?marker=" + "9" * 200, "/console/audit?key=alias/none",
                     "/console/audit?from=yesterday&to=%00", "/console/usage?from=now&to=-1h",
                     "/console/usage?key=arn:aws:kms:eu-west-1:999999999999:key/x", "/console/keys/%ff%fe",
                     "/console/keys/alias%2F..%2F..%2Fetc", "/static/../api/cli.py", "/static/console/../../cli.py"):
            answers.append((path, client.get(path)))
        for data in ({"csrf": csrf, **{f"f{i}": "v" for i in range(50)}}, {"csrf": long}, {"access_key_id": long},
                     {"csrf": csrf, "access_key_id": ADMIN_KEY_ID, "secret": ADMIN_SECRET, "region": "mars-1"}):
            answers.append(("signin", client.post("/console/signin", data=data)))
        answers.append(("signout", client.post("/console/signout", content=b"\xff\xfe" * 100,
                                               headers={"content-type": "application/x-www-form-urlencoded"})))
    for cookie in ("", "a.b", "." * 600, "x" * 4000, "%%%", "e30.e30", "keyledger_console=\"\\\""):
        answers.append(("cookie", httpx.get(server.endpoint + "/console/keys",
                                            headers={"cookie": f"keyledger_console={cookie}"})))
    failures = [(where, a.status_code) for where, a in answers if a.status_code >= 500]
    assert not failures, failures
    assert all(a.status_code in (200, 303, 400, 404, 405, 413) for _, a in answers), \
        [(w, a.status_code) for w, a in answers]
    # Nothing above signed anybody in, and the server still serves.
    assert anonymous.get("/console/keys").status_code == 303
    assert signed_in.get("/console/keys").status_code == 200
    assert not any("cli.py" in a.text and "def serve" in a.text for _, a in answers)


def test_v1_audit_marker_beyond_64_bits_is_refused_not_a_500(server: Server) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{server.endpoint}/v1/audit?marker={'9' * 40}"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", "us-east-1").add_auth(request)
    answer = httpx.get(url, headers=dict(request.headers))
    assert 400 <= answer.status_code < 500, answer.text
