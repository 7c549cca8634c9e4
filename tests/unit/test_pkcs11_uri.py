"""RFC 7512 PKCS#11 URIs as KEYLEDGER_ROOT_KEY, and where the token's PIN comes from (environment, a mode-0600 file,
the URI's pin-source or pin-value), without loading a PKCS#11 module: a refused URI or PIN source seals the server
with a reason that never contains the PIN."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.pkcs11_token import MAX_URI_LENGTH, Pkcs11UriError, parse_pkcs11_uri
from infrastructure.root_keys import Pkcs11RootKeyProvider, RootKeyUnavailable
from infrastructure.settings import Settings

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def test_token_object_and_query_attributes():
    uri = parse_pkcs11_uri("pkcs11:token=My%20Token;object=root%3Bkey;type=secret-key;x-vendor=1"
                           "?module-path=/opt/hsm.so&pin-source=file:/run/pin")
    assert (uri.token, uri.object, uri.module_path, uri.pin_source) == ("My Token", "root;key", "/opt/hsm.so",
                                                                       "file:/run/pin")
    assert str(uri) == "pkcs11:token=My%20Token;object=root%3Bkey"  # canonical, never the PIN
    assert "secret" not in repr(parse_pkcs11_uri("pkcs11:token=t;object=o?pin-value=secret"))


@pytest.mark.parametrize("text, reason", [
    ("token=t;object=o", "starts with 'pkcs11:'"),
    ("pkcs11:token=t", "both token= and object="),
    ("pkcs11:object=o", "both token= and object="),
    ("pkcs11:token=;object=o", "both token= and object="),
    ("pkcs11:token=t;object=o;type=private", "secret-key"),
    ("pkcs11:token=t;object=o;colour=red", "not one RFC 7512 defines"),
    ("pkcs11:token=t;object=o?token=u", "not one RFC 7512 defines"),  # a path attribute in the query
    ("pkcs11:token=t;token=u;object=o", "appears twice"),
    ("pkcs11:token;object=o", "has no value"),
    ("pkcs11:token=%ff;object=o", ""),  # not UTF-8 once decoded
    ("pkcs11:token=t;object=" + "o" * MAX_URI_LENGTH, "at most"),
])
def test_refused_uris(text, reason):
    with pytest.raises((Pkcs11UriError, UnicodeDecodeError)) as info:
        parse_pkcs11_uri(text)
    assert reason in str(info.value)


@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_with_a_value_error(text):
    try:
        uri = parse_pkcs11_uri("pkcs11:" + text)
    except ValueError:  # Pkcs11UriError and UnicodeDecodeError both are
        return
    assert uri.token and uri.object


def provider(tmp_path: Path, uri: str, **env: str) -> Pkcs11RootKeyProvider:
    return Pkcs11RootKeyProvider(Settings.load(environ={
        "KEYLEDGER_ROOT_KEY_PROVIDER": "pkcs11", "KEYLEDGER_ROOT_KEY": uri, "KEYLEDGER_PKCS11_MODULE": MODULE, **env},
        data_dir=tmp_path))


def pin_file(path: Path, pin: str, mode: int = 0o600) -> Path:
    path.write_text(pin + "\n")
    os.chmod(path, mode)
    return path


def test_pin_sources_in_order_environment_file_uri_source_uri_value(tmp_path):
    uri = "pkcs11:token=t;object=o"
    named = pin_file(tmp_path / "pin", "from-file")
    in_uri = pin_file(tmp_path / "uri-pin", "from-uri-source")
    assert provider(tmp_path, uri, KEYLEDGER_PKCS11_PIN="from-env", KEYLEDGER_PKCS11_PIN_FILE=str(named))._pin == "from-env"
    assert provider(tmp_path, f"{uri}?pin-source=file:{in_uri}", KEYLEDGER_PKCS11_PIN_FILE=str(named))._pin == "from-file"
    assert provider(tmp_path, f"{uri}?pin-source=file:{in_uri}&pin-value=v")._pin == "from-uri-source"
    assert provider(tmp_path, f"{uri}?pin-source=file://{in_uri}")._pin == "from-uri-source"  # file:// form
    assert provider(tmp_path, f"{uri}?pin-value=from-uri-value")._pin == "from-uri-value"
    assert provider(tmp_path, f"{uri}?module-path=/opt/other.so", KEYLEDGER_PKCS11_PIN="p").module == "/opt/other.so"


def test_unusable_pin_sources_and_uris_seal_with_a_reason(tmp_path):
    uri = "pkcs11:token=t;object=o"
    readable = pin_file(tmp_path / "open-pin", "pin-4821-secret", 0o644)
    for env, reason in (({}, "PIN is not given"),
                        ({"KEYLEDGER_PKCS11_PIN_FILE": str(readable)}, "readable by others"),
                        ({"KEYLEDGER_PKCS11_PIN_FILE": str(tmp_path / "absent")}, "cannot be read")):
        with pytest.raises(RootKeyUnavailable) as info:
            provider(tmp_path, uri, **env)
        assert reason in str(info.value) and "pin-4821-secret" not in str(info.value)
    with pytest.raises(RootKeyUnavailable, match="not a usable PKCS#11 URI"):
        provider(tmp_path, "pkcs11:token=t", KEYLEDGER_PKCS11_PIN="p")
    with pytest.raises(RootKeyUnavailable, match="KEYLEDGER_PKCS11_MODULE"):
        Pkcs11RootKeyProvider(Settings.load(environ={"KEYLEDGER_ROOT_KEY_PROVIDER": "pkcs11", "KEYLEDGER_ROOT_KEY": uri,
                                                     "KEYLEDGER_PKCS11_PIN": "p"}, data_dir=tmp_path))
