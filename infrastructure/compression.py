"""Stored event states compressed one by one: the event library's compressor (``COMPRESSOR_TOPIC``), applied by
its mapper to every event and snapshot state before it is stored (docs/audit.md, "Stored form").

An audit record is about 1.4 KB of JSON, nearly all of it the same field names, ARNs and values from one record
to the next. Plain compression finds little to share inside one record (about 800 bytes remain); with a dictionary
of typical states it keeps only what is new, about 150 bytes for an Encrypt record.

Forms of a stored state, told apart by the first byte:
- ``0x02`` (written since session 8, decision 250): a Zstandard frame (no magic number, no dictionary id, its
  content size in the header) compressed with dictionary version 2, then the CRC-32 of the marker and frame (4 bytes,
  big-endian). Zstandard with a dictionary trained on keyledger's own states writes about half the bytes zlib
  did, in a seventh of the committer's CPU, and reads back in a quarter of the time (docs/performance.md).
- ``0x01`` (session 7): the raw DEFLATE stream of zlib with the preset dictionary ``DICTIONARY_V1``, then the
  same CRC. Read, never written any more.
- ``{``: JSON stored before compression (every state the transcoder writes is a JSON object), returned as it is.
Anything else fails to decompress, as a damaged row does.

The CRC is there because a compressed format can spell one content in more than one way (DEFLATE ignores the
padding bits after its last block; a Zstandard header has fields the content does not depend on): without it,
some single-bit changes to a row would decompress to the same record and go unseen.

A dictionary may never change: every row written with its version needs exactly its bytes to be read.
Version 2's dictionary is a file (infrastructure/data/state-dictionary-v2.zdict, made by bench/state_dictionary.py)
pinned by its SHA-256 here; a better dictionary is version 3, with its own marker byte, beside these.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import zlib
from pathlib import Path

import zstandard
from eventsourcing.compressor import Compressor

VERSION_1 = b"\x01"
VERSION_2 = b"\x02"
LEGACY_JSON = b"{"
MAX_STATE_BYTES = 64 * 1024 * 1024  # a stored state decompresses to at most this: a forged row cannot exhaust memory
_WBITS = -15  # raw DEFLATE; read with the largest window, so any window a writer used decompresses
# Version 1 was written with a 4 KB window and small hash tables (the same size for a record as zlib's defaults,
# a primed compressor about a fifth of theirs to copy).
_LEVEL, _WRITE_WBITS, _MEMLEVEL = 6, -12, 4

# Typical states, least common first (DEFLATE reaches the end of the dictionary with the shortest distances).
# Values that are random in every row (ids, hashes, signatures) are placeholders: only their frame is shared.
DICTIONARY_V1 = b"".join((
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},"checkpoint":{"seq":1000,'
    b'"chain":"0000000000000000000000000000000000000000000000000000000000000000","time":"2026-01-01T00:00:00Z",'
    b'"previous":"","signature":""}}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},"originator_topic":'
    b'"domain.principals.principal:Principal","arn":"arn:aws:iam::111122223333:user/","partition":"aws",'
    b'"account_id":"111122223333","kind":"user","name":"","path":"/","unique_id":"AIDA"}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},"originator_topic":'
    b'"domain.keys.key:Key","account_id":"111122223333","region":"us-east-1","partition":"aws","key_spec":'
    b'"SYMMETRIC_DEFAULT","key_usage":"ENCRYPT_DECRYPT","origin":"AWS_KMS","description":"","policy":"{\\n  '
    b'\\"Version\\": \\"2012-10-17\\",\\n  \\"Id\\": \\"key-default-1\\",\\n  \\"Statement\\": [\\n    {\\n      '
    b'\\"Sid\\": \\"Enable IAM User Permissions\\",\\n      \\"Effect\\": \\"Allow\\",\\n      \\"Principal\\": '
    b'{\\n        \\"AWS\\": \\"arn:aws:iam::111122223333:root\\"\\n      },\\n      \\"Action\\": \\"kms:*\\",'
    b'\\n      \\"Resource\\": \\"*\\"\\n    }\\n  ]\\n}","tags":{},"material_id":"","commitment":"",'
    b'"multi_region":false,"custom_key_store_id":null,"cloud_hsm_cluster_id":null,"xks_key_id":null,'
    b'"public_key_id":null}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},"description":""}',
    b'"requestParameters":{"keyId":"","keySpec":"AES_256","numberOfBytes":32,"grantTokens":[],"description":"",'
    b'"keyUsage":"ENCRYPT_DECRYPT","origin":"AWS_KMS","aliasName":"alias/","targetKeyId":"","signingAlgorithm":'
    b'"ECDSA_SHA_256","messageType":"RAW","macAlgorithm":"HMAC_SHA_256","destinationKeyId":"",'
    b'"sourceEncryptionAlgorithm":"SYMMETRIC_DEFAULT","destinationEncryptionAlgorithm":"SYMMETRIC_DEFAULT"},'
    b'"responseElements":{"keyMetadata":{"keyId":"","arn":"","creationDate":"","enabled":true,"keyState":"Enabled"'
    b'}},"errorCode":"AccessDeniedException","errorMessage":"","additionalEventData":{"authorizedByRule":"service"},'
    b'"ledgerEvents":[{"aggregate":"","version":1,"digest":""}],"userIdentity":{"type":"IAMUser","principalId":'
    b'"AIDA","arn":"arn:aws:iam::111122223333:user/","accountId":"111122223333","accessKeyId":"AKIA","userName":""'
    b'},"userIdentity":{"type":"AssumedRole","principalId":"AROA","arn":"arn:aws:sts::111122223333:assumed-role/",'
    b'"accountId":"111122223333","accessKeyId":"ASIA","sessionContext":{"sessionIssuer":{"type":"Role",'
    b'"principalId":"AROA","arn":"arn:aws:iam::111122223333:role/","accountId":"111122223333","userName":""},'
    b'"attributes":{"mfaAuthenticated":"false"}}},"eventName":"GenerateDataKey","eventName":"Decrypt",'
    b'"encryptionAlgorithm":"SYMMETRIC_DEFAULT","userAgent":"aws-cli/2 Python/3 Linux/6 exe/x86_64 ',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},"record":{"eventVersion":"1.08",'
    b'"eventTime":"2026-01-01T00:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Encrypt","awsRegion":'
    b'"us-east-1","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root",'
    b'"accountId":"111122223333","accessKeyId":"AKIA"},"sourceIPAddress":"127.0.0.1","userAgent":"Boto3/1.35.0 '
    b'md/Botocore#1.35.0 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython '
    b'cfg/retry-mode#legacy Botocore/1.35.0","requestParameters":{"keyId":"arn:aws:kms:us-east-1:111122223333:key/",'
    b'"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{}},"responseElements":null,"errorCode":null,'
    b'"errorMessage":null,"requestID":"","eventID":"","readOnly":true,"resources":[{"accountId":"111122223333",'
    b'"type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/"}],"eventType":"AwsApiCall",'
    b'"managementEvent":true,"eventCategory":"Management","recipientAccountId":"111122223333","seq":1,"leaf":"",'
    b'"chain":""}}',
))


DICTIONARY_V2_FILE = Path(__file__).parent / "data" / "state-dictionary-v2.zdict"
DICTIONARY_V2_SHA256 = "fa5f1253144d8b07be745f601bac48c37bd04770a2c8e9d8fab29861ccd66bc7"
_ZSTD_LEVEL = 3  # level 1 to 6 write the same size for a record with this dictionary; 3 is Zstandard's default
_ZSTD_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS  # the marker byte says what follows: the 4-byte magic would be waste
_crc32, _frame_parameters = zlib.crc32, zstandard.get_frame_parameters


@functools.cache  # read once, when the first compressor is made
def dictionary_v2() -> zstandard.ZstdCompressionDict:
    data = DICTIONARY_V2_FILE.read_bytes()
    if hashlib.sha256(data).hexdigest() != DICTIONARY_V2_SHA256:
        # Rows written with version 2 read back only with exactly these bytes: refuse to run on another file.
        raise RuntimeError(f"{DICTIONARY_V2_FILE} is not the state dictionary version 2 keyledger was built with: "
                           "reinstall keyledger")
    dictionary = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
    dictionary.precompute_compress(level=_ZSTD_LEVEL)  # the dictionary's tables, built once and shared by threads
    return dictionary


class _PerThread(threading.local):
    """Zstandard's compressor and decompressor objects may not be used by two threads at once: one of each per
    thread (the committer, the request threads), all sharing the dictionary's precomputed tables."""

    def __init__(self) -> None:
        params = zstandard.ZstdCompressionParameters.from_level(
            _ZSTD_LEVEL, format=_ZSTD_FORMAT, write_content_size=True, write_checksum=False, write_dict_id=False)
        dictionary = dictionary_v2()
        self.compress = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress
        self.decompress = zstandard.ZstdDecompressor(dict_data=dictionary, format=_ZSTD_FORMAT).decompress


class LedgerCompressor(Compressor):
    """Writes version 2; reads versions 2 and 1 and states stored before compression as they are."""

    def __init__(self) -> None:
        dictionary_v2()  # a missing or changed dictionary file stops the runtime from being built
        self._local = _PerThread()

    def compress(self, data: bytes) -> bytes:
        framed = VERSION_2 + self._local.compress(data)
        return framed + _crc32(framed).to_bytes(4, "big")

    def decompress(self, data: bytes) -> bytes:
        # Every stored event read (verify, replay, loading a key) passes here: the usual case, version 2, first.
        if data[:1] == VERSION_2 and len(data) > 5:
            view = memoryview(data)
            if _crc32(view[:-4]) != int.from_bytes(view[-4:], "big"):
                raise ValueError("compressed state damaged: its CRC does not match")
            frame = view[1:-4]
            try:
                # The header's content size sizes the output: bounded before anything is allocated (a frame
                # without one says -1, and keyledger never writes such a frame).
                size = _frame_parameters(frame, format=_ZSTD_FORMAT).content_size
                if not 0 <= size <= MAX_STATE_BYTES:
                    raise ValueError("compressed state damaged or too large: its declared size is out of bounds")
                out = self._local.decompress(frame, allow_extra_data=False)
            except zstandard.ZstdError as error:
                raise ValueError(f"compressed state damaged or truncated ({error})") from None
            if len(out) != size:
                raise ValueError("compressed state damaged: it does not hold the size its header declares")
            return out
        marker = data[:1]
        if marker == LEGACY_JSON:
            return data
        if marker != VERSION_1 or len(data) < 6:
            raise ValueError("not a stored state: unknown compression marker")
        framed = data[:-4]
        if _crc32(framed) != int.from_bytes(data[-4:], "big"):
            raise ValueError("compressed state damaged: its CRC does not match")
        inflate = zlib.decompressobj(_WBITS, DICTIONARY_V1)
        out = inflate.decompress(framed[1:], MAX_STATE_BYTES)
        if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
            raise ValueError("compressed state damaged, truncated or too large")
        return out
