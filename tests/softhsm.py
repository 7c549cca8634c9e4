"""SoftHSM2 for tests: each test gets its own token directory and SOFTHSM2_CONF, so tests never share a
token. Without the library (Debian package softhsm2) the tests skip with the reason; with CI set they fail,
because .ci/run installs it and a skipped HSM test in CI would hide a missing install step."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

MODULE_CANDIDATES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
SO_PIN = "so-pin-5678"


def softhsm_module() -> str:
    for candidate in MODULE_CANDIDATES:
        if os.path.exists(candidate) and shutil.which("softhsm2-util"):
            return candidate
    reason = ("SoftHSM2 is not installed (apt-get install -y softhsm2: /usr/lib/softhsm/libsofthsm2.so and "
              "softhsm2-util); the PKCS#11 tests need it")
    if os.environ.get("CI"):
        pytest.fail(reason + ", and in CI they must run (.ci/run installs it).")
    pytest.skip(reason + ".")


class SoftHsm:
    """A private SoftHSM2 configuration with its own token directory."""

    def __init__(self, directory: Path) -> None:
        self.module = softhsm_module()
        self.directory = directory
        (directory / "tokens").mkdir(parents=True, exist_ok=True)
        self.conf = directory / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
                             "log.level = ERROR\nslots.removable = false\n")

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def init_token(self, label: str, pin: str) -> None:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", SO_PIN],
                       env={**os.environ, **self.env}, check=True, capture_output=True, timeout=60)

    def objects(self, label: str, pin: str) -> list[dict[str, Any]]:
        """Every secret key in the token (label, id hex, sensitive, extractable), listed by a separate process
        through the same PKCS#11 module: what an operator's tool sees."""
        script = (
            "import json, sys, pkcs11\n"
            "from pkcs11 import Attribute, ObjectClass\n"
            "token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])\n"
            "with token.open(user_pin=sys.argv[3]) as s:\n"
            "    print(json.dumps([{'label': k.label, 'id': k[Attribute.ID].hex(),\n"
            "                       'sensitive': bool(k[Attribute.SENSITIVE]), 'extractable': bool(k[Attribute.EXTRACTABLE])}\n"
            "                      for k in s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})]))\n")
        out = subprocess.run([sys.executable, "-c", script, self.module, label, pin], env={**os.environ, **self.env},
                             check=True, capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)

    def token_files(self) -> bytes:
        return b"\n".join(p.read_bytes() for p in sorted((self.directory / "tokens").rglob("*")) if p.is_file())


@pytest.fixture
def softhsm(tmp_path: Path) -> SoftHsm:
    return SoftHsm(tmp_path / "softhsm")
