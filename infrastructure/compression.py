"""Stored event states compressed one by one: the event library's compressor (``COMPRESSOR_TOPIC``), applied by
its mapper to every event and snapshot state before it is stored (docs/audit.md, "Stored form").

An audit record is about 1.4 KB of JSON, nearly all of it the same field names, ARNs and values from one record
to the next. Plain zlib finds little to share inside one record (about 800 bytes remain); with a preset dictionary
of typical states it keeps only what is new, about 200 bytes for an Encrypt record.

Form of a compressed state: ``0x01`` (the dictionary's version), the raw DEFLATE stream, then the CRC-32 of both
(4 bytes, big-endian). The CRC is there because DEFLATE ignores the padding bits after its last block: without it,
some single-bit changes to a row would decompress to the same record and go unseen. A state that starts with
``{`` was stored before compression (every state the transcoder writes is a JSON object) and is returned as it
is, so existing stores keep working unchanged. Anything else fails to decompress, as a damaged row does.

``DICTIONARY_V1`` may never change: every row written with version 1 needs exactly these bytes to be read. A
better dictionary is version 2, with its own marker byte, beside this one.
"""
from __future__ import annotations

import zlib

from eventsourcing.compressor import Compressor

VERSION_1 = b"\x01"
LEGACY_JSON = b"{"
MAX_STATE_BYTES = 64 * 1024 * 1024  # a stored state decompresses to at most this: a forged row cannot exhaust memory
_WBITS = -15  # raw DEFLATE; read with the largest window, so any window a writer used decompresses
# Written with a 4 KB window and small hash tables: the same size for a record as zlib's defaults, and a primed
# compressor about a fifth of theirs to copy (the committer copies one per record; docs/performance.md, "Session 7").
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


class LedgerCompressor(Compressor):
    """zlib with ``DICTIONARY_V1``, one state at a time; reads states stored before compression as they are."""

    def __init__(self) -> None:
        # The dictionary is hashed into a compressor once; each state is compressed by a copy of it (thread-safe:
        # zlib's copy holds the object's lock), instead of hashing the dictionary again for every state.
        self._primed = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WRITE_WBITS, _MEMLEVEL, zlib.Z_DEFAULT_STRATEGY,
                                        DICTIONARY_V1)

    def compress(self, data: bytes) -> bytes:
        deflate = self._primed.copy()
        framed = VERSION_1 + deflate.compress(data) + deflate.flush()
        return framed + zlib.crc32(framed).to_bytes(4, "big")

    def decompress(self, data: bytes) -> bytes:
        marker = data[:1]
        if marker == LEGACY_JSON:
            return data
        if marker != VERSION_1 or len(data) < 6:
            raise ValueError("not a stored state: unknown compression marker")
        framed = data[:-4]
        if zlib.crc32(framed) != int.from_bytes(data[-4:], "big"):
            raise ValueError("compressed state damaged: its CRC does not match")
        inflate = zlib.decompressobj(_WBITS, DICTIONARY_V1)
        out = inflate.decompress(framed[1:], MAX_STATE_BYTES)
        if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
            raise ValueError("compressed state damaged, truncated or too large")
        return out
