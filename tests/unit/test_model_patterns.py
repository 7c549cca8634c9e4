"""The regular expressions botocore's KMS model makes the wire model apply to caller input (decision 68).

Each was read for catastrophic backtracking: every repetition is followed by something it cannot match
(a separator outside its character class, or the end), so ``re`` never has two ways to split the input and
a match is linear in the value's length (which the body limit bounds; the model's max length is checked
too, but next to the pattern, not before it, because AWS reports both). A botocore upgrade that adds or
changes a pattern fails this test until someone has read the new one and listed it here.
"""
from __future__ import annotations

import re

import botocore.session
import pytest

REVIEWED = {
    "[0-9]{12}": "bounded repetition",
    "^[a-zA-Z0-9:/_-]+$": "one class, then the end",
    "^[a-f0-9]+$": "one class, then the end",
    "cluster-[2-7a-zA-Z]{11,16}": "bounded repetition",
    "^arn:aws[a-z0-9-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{12}:.+$": "each run stops at a ':' it cannot match",
    "^[a-zA-Z0-9:/_\\s.-]+$": "one class, then the end",
    "[\\u0020-\\u00FF]*": "one class, then the end",
    "[\\w]+": "one class, then the end",
    "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+": "one class, then the end",
    "^[\\w+=,.@:/-]+$": "one class, then the end",
    "^([a-z]+-){2,3}\\d+$": "letters stop at '-'; at most three groups",
    "^([A-Za-z0-9\\-]+)\\.([A-Za-z0-9\\-]+)(\\.[A-Za-z0-9\\-]+)+$": "each run stops at a '.' it cannot match",
    "^[a-zA-Z0-9-_.]+$": "one class, then the end",
    "^[A-Z2-7]+$": "one class, then the end",
    "^[a-zA-Z0-9\\/+=]+$": "one class, then the end",
    "^https://[a-zA-Z0-9.-]+$": "one class, then the end",
    "^(/[a-zA-Z0-9\\/_-]+/kms/xks/v\\d{1,2})$|^(/kms/xks/v\\d{1,2})$":
        "one run, then a fixed suffix tried once per '/' it gave back",
    "^(com|eu)\\.amazonaws\\.vpce\\.([a-z]+-){2,3}\\d+\\.vpce-svc-[0-9a-z]+$": "letters stop at '-'; bounded groups",
}


def model_patterns() -> set[str]:
    model = botocore.session.get_session().get_service_model("kms")
    return {pattern for name in model.shape_names if (pattern := model.shape_for(name).metadata.get("pattern"))}


def test_every_pattern_of_the_model_was_reviewed():
    unreviewed = model_patterns() - set(REVIEWED)
    assert not unreviewed, f"read these for backtracking, then list them in REVIEWED: {sorted(unreviewed)}"


@pytest.mark.parametrize("pattern", sorted(REVIEWED))
def test_reviewed_patterns_refuse_long_near_misses(pattern):
    """Near misses (a long valid-looking run, then a character that breaks it) are answered; a backtracking
    pattern would not finish on these lengths."""
    regex = re.compile(pattern, re.ASCII)
    for run in ("a" * 100_000, "a-" * 50_000, "a." * 50_000, "/" * 100_000, "1" * 100_000):
        assert regex.fullmatch(run + "\x00") is None
