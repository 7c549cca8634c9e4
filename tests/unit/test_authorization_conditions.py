"""Condition operators clause by clause: the corners of the IAM rules that the scenario table reaches only
through whole policies (missing keys, negation, set qualifiers, value types)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from domain.policy.conditions import (
    Condition,
    Operator,
    clause_holds,
    conditions_hold,
    normalize_context,
    parse_operator,
    wildcard_match,
)

T0 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)  # epoch 1700000000


@pytest.mark.parametrize("pattern, value, ignore_case, expected", [
    ("*", "", False, True), ("a?c", "abc", False, True), ("a?c", "ac", False, False),
    ("a.b", "axb", False, False), ("kms:Get*", "KMS:GETPUBLICKEY", True, True),
    ("kms:Get*", "KMS:GETPUBLICKEY", False, False),
    ("a*b*c", "a-b-x-c", False, True), ("[ab]", "a", False, False),
])
def test_wildcard_match(pattern, value, ignore_case, expected):
    assert wildcard_match(pattern, value, ignore_case) is expected


@pytest.mark.parametrize("name, expected", [
    ("StringEquals", Operator(None, "StringEquals", False)),
    ("stringequals", Operator(None, "StringEquals", False)),
    ("ForAnyValue:StringLikeIfExists", Operator("ForAnyValue", "StringLike", True)),
    ("ForAllValues:ArnNotLike", Operator("ForAllValues", "ArnNotLike", False)),
    ("DateGreaterThanEqualsIfExists", Operator(None, "DateGreaterThanEquals", True)),
    ("Null", Operator(None, "Null", False)),
    ("NullIfExists", None), ("IfExists", None), ("ForSome:StringEquals", None), ("StringEqualz", None),
])
def test_parse_operator(name, expected):
    assert parse_operator(name) == expected


CLAUSES = [
    # missing keys: positive false, negated true, IfExists true, set qualifiers decide before IfExists
    ("missing-positive", "StringEquals", ["a"], {}, False),
    ("missing-negated", "StringNotEquals", ["a"], {}, True),
    ("missing-if-exists", "StringEqualsIfExists", ["a"], {}, True),
    ("present-if-exists", "StringEqualsIfExists", ["a"], {"k": "b"}, False),
    ("missing-negated-if-exists", "StringNotEqualsIfExists", ["a"], {}, True),
    ("missing-for-all", "ForAllValues:StringEquals", ["a"], {}, True),
    ("empty-for-all", "ForAllValues:StringEquals", ["a"], {"k": []}, True),
    ("missing-for-any", "ForAnyValue:StringEquals", ["a"], {}, False),
    ("missing-for-any-if-exists", "ForAnyValue:StringEqualsIfExists", ["a"], {}, False),
    # several policy values: OR for positive operators, NOR for negated ones
    ("or", "StringEquals", ["a", "b"], {"k": "b"}, True),
    ("nor", "StringNotEquals", ["a", "b"], {"k": "b"}, False),
    ("nor-none-match", "StringNotEquals", ["a", "b"], {"k": "c"}, True),
    # multivalued request keys
    ("for-all-not-equals", "ForAllValues:StringNotEquals", ["a", "b"], {"k": ["c", "d"]}, True),
    ("for-all-not-equals-one-hits", "ForAllValues:StringNotEquals", ["a", "b"], {"k": ["a", "d"]}, False),
    ("for-any-not-equals", "ForAnyValue:StringNotEquals", ["a"], {"k": ["a", "c"]}, True),
    ("plain-operator-on-list", "StringEquals", ["a"], {"k": ["x", "a"]}, True),
    ("plain-negated-on-list", "StringNotEquals", ["a"], {"k": ["x", "a"]}, False),
    # value families
    ("string-case", "StringEquals", ["Acme"], {"k": "acme"}, False),
    ("string-ignore-case", "StringEqualsIgnoreCase", ["Acme"], {"k": "ACME"}, True),
    ("string-of-bool", "StringEquals", ["true"], {"k": True}, True),
    ("string-of-int", "StringEquals", ["5"], {"k": 5}, True),
    ("numeric-equal-forms", "NumericEquals", ["5"], {"k": 5.0}, True),
    ("numeric-greater", "NumericGreaterThan", ["5"], {"k": "6"}, True),
    ("numeric-unreadable", "NumericGreaterThan", ["5"], {"k": "abc"}, False),
    ("numeric-not-equals-unreadable", "NumericNotEquals", ["5"], {"k": "abc"}, True),
    ("date-epoch-policy", "DateEquals", ["1700000000"], {"k": T0}, True),
    ("date-naive-is-utc", "DateEquals", ["2023-11-14T22:13:20Z"], {"k": T0.replace(tzinfo=None)}, True),
    ("date-iso-request", "DateLessThanEquals", ["2023-11-14"], {"k": "2023-11-13T23:59:59+00:00"}, True),
    ("date-not-equals", "DateNotEquals", ["2023-11-14"], {"k": T0}, True),
    ("bool-string", "Bool", ["true"], {"k": "TRUE"}, True),
    ("bool-not-a-bool", "Bool", ["true"], {"k": 1}, False),
    ("bool-if-exists-missing", "BoolIfExists", ["false"], {}, True),
    ("binary", "BinaryEquals", ["aGk="], {"k": b"hi"}, True),
    ("ip-v6", "IpAddress", ["2001:db8::/32"], {"k": "2001:db8::1"}, True),
    ("ip-v4-in-v6-net", "IpAddress", ["2001:db8::/32"], {"k": "10.0.0.1"}, False),
    ("ip-single-address", "IpAddress", ["203.0.113.7"], {"k": "203.0.113.7"}, True),
    ("not-ip-unreadable", "NotIpAddress", ["10.0.0.0/8"], {"k": "garbage"}, True),
    ("arn-parts", "ArnLike", ["arn:aws:iam::*:role/*"], {"k": "arn:aws:iam::111122223333:role/app"}, True),
    ("arn-star-stays-in-its-part", "ArnLike", ["arn:aws:iam::1111*:user/x"],
     {"k": "arn:aws:iam::111122223333:role/x"}, False),
    ("arn-equals-wildcard", "ArnEquals", ["arn:aws:kms:*:111122223333:key/*"],
     {"k": "arn:aws:kms:us-east-1:111122223333:key/abc"}, True),
    ("arn-resource-with-colons", "ArnLike", ["arn:aws:logs:us-east-1:1:log-group:*"],
     {"k": "arn:aws:logs:us-east-1:1:log-group:a:b"}, True),
    ("arn-not-like", "ArnNotLike", ["arn:aws:iam::*:root"], {"k": "arn:aws:iam::1:user/u"}, True),
    # Null tests presence; an empty list is no value
    ("null-true-missing", "Null", ["true"], {}, True),
    ("null-true-empty-list", "Null", ["true"], {"k": []}, True),
    ("null-false-empty-string", "Null", ["false"], {"k": ""}, True),
    ("null-true-present", "Null", ["true"], {"k": "v"}, False),
]


@pytest.mark.parametrize("operator, values, context, expected", [case[1:] for case in CLAUSES],
                         ids=[case[0] for case in CLAUSES])
def test_clause(operator, values, context, expected):
    assert clause_holds(Condition(operator, "k", tuple(values)), normalize_context(context), unknown=False) is expected


def test_context_key_names_are_case_insensitive():
    context = normalize_context({"AWS:SourceIP": "10.1.2.3"})
    assert clause_holds(Condition("IpAddress", "aws:sourceip", ("10.0.0.0/8",)), context, unknown=False)


def test_unknown_operator_is_what_the_caller_says_and_the_rest_still_counts():
    unknown = Condition("StringEqualsSometimes", "k", ("v",))
    failing = Condition("StringEquals", "k", ("other",))
    context = {"k": "v"}
    assert conditions_hold([unknown], context, unknown=False) is False  # an Allow never matches
    assert conditions_hold([unknown], context, unknown=True) is True  # a Deny still applies
    assert conditions_hold([unknown, failing], context, unknown=True) is False  # ...only when the rest holds
    assert conditions_hold([], context, unknown=False) is True
