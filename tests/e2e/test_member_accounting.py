"""Every member of every operation in the installed botocore KMS model is accounted for (decision 85): honoured,
and named here by a behaviour test that exercises it, or refused with a clear error by a live server. A member a
newer botocore adds fails test_every_member_of_every_served_operation_is_accounted_for until it is classified in
api/members.py (and refused at run time meanwhile); an operation keyledger does not serve answers
UnknownOperationException, whatever its members."""
from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

from api.members import MEMBERS, Refusal, refuse_unhonoured
from api.operations import HANDLERS
from domain.errors import UnsupportedOperationError
from tests.e2e.helpers import code, unvalidated_client

MODEL = botocore.session.get_session().get_service_model("kms")
E2E = Path(__file__).resolve().parent

# operation -> honoured member -> "<file in tests/e2e>::<test function>" that exercises it.
BEHAVIOUR: dict[str, dict[str, str]] = {
    "ConnectCustomKeyStore": {"CustomKeyStoreId": "test_custom_key_stores.py::test_cloudhsm_store_life_cycle"},
    "CreateCustomKeyStore": {**{name: "test_custom_key_stores.py::test_store_errors_wrong_pin_and_password_update" for name in (
        "CustomKeyStoreName", "CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword", "CustomKeyStoreType")},
        **{name: "test_external_key_stores.py::test_external_key_store_through_another_keyledger" for name in (
            "XksProxyUriEndpoint", "XksProxyUriPath", "XksProxyAuthenticationCredential", "XksProxyConnectivity")}},
    "DeleteCustomKeyStore": {"CustomKeyStoreId": "test_custom_key_stores.py::test_cloudhsm_store_life_cycle"},
    "DescribeCustomKeyStores": {name: "test_custom_key_stores.py::test_store_errors_wrong_pin_and_password_update" for name in ("CustomKeyStoreId", "CustomKeyStoreName", "Limit", "Marker")},
    "DisconnectCustomKeyStore": {"CustomKeyStoreId": "test_custom_key_stores.py::test_cloudhsm_store_life_cycle"},
    "UpdateCustomKeyStore": {"CustomKeyStoreId": "test_custom_key_stores.py::test_store_errors_wrong_pin_and_password_update", "NewCustomKeyStoreName": "test_custom_key_stores.py::test_cloudhsm_store_life_cycle", "KeyStorePassword": "test_custom_key_stores.py::test_store_errors_wrong_pin_and_password_update",
                             "CloudHsmClusterId": "test_custom_key_stores.py::test_store_errors_wrong_pin_and_password_update",
                             **{name: "test_external_key_stores.py::test_external_key_store_through_another_keyledger" for name in (
                                 "XksProxyUriEndpoint", "XksProxyUriPath", "XksProxyAuthenticationCredential",
                                 "XksProxyConnectivity")}},
    "CancelKeyDeletion": {
        "KeyId": "test_audit_records.py::test_lifecycle_records_echo_their_response",
    },
    "CreateAlias": {
        "AliasName": "test_aliases.py::test_create_alias_and_use_it",
        "TargetKeyId": "test_aliases.py::test_create_alias_and_use_it",
    },
    "CreateGrant": {
        "KeyId": "test_authorization_scenarios.py::test_scenario",
        "GranteePrincipal": "test_authorization_scenarios.py::test_scenario",
        "RetiringPrincipal": "test_member_behaviour.py::test_list_grants_and_policies_and_retirable_grants_page",
        "Operations": "test_authorization_scenarios.py::test_a_grant_token_works_at_once_on_another_server_process",
        "Constraints": "test_grants.py::test_name_makes_a_retry_return_the_same_grant",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "Name": "test_authorization_scenarios.py::test_scenario",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "CreateKey": {
        "Policy": "test_audit_bounds.py::test_a_record_of_the_largest_valid_create_key_is_bounded_and_marked",
        "Description": "test_audit_bounds.py::test_a_record_of_the_largest_valid_create_key_is_bounded_and_marked",
        "KeyUsage": "test_hostile_wildcards.py::test_a_context_too_large_to_bound_evaluation_is_refused_before_authorization",
        "CustomerMasterKeySpec": "test_keys_lifecycle.py::test_create_key_defaults_to_symmetric_default",
        "KeySpec": "test_hostile_wildcards.py::test_a_context_too_large_to_bound_evaluation_is_refused_before_authorization",
        "Origin": "test_lifecycle_asymmetric.py::test_local_signatures_verify_through_the_api",
        "CustomKeyStoreId": "test_member_behaviour.py::test_create_key_multi_region_false_and_custom_key_store_id",
        "BypassPolicyLockoutSafetyCheck": "test_authorization_scenarios.py::test_scenario",
        "Tags": "test_audit_bounds.py::test_a_record_of_the_largest_valid_create_key_is_bounded_and_marked",
        "MultiRegion": "test_multi_region_keys.py::test_multi_region_life_cycle_across_three_regions",
        "XksKeyId": "test_external_key_stores.py::test_external_key_store_through_another_keyledger",
    },
    "Decapsulate": {
        "KeyId": "test_lifecycle_asymmetric.py::test_ml_kem_encapsulate_then_decapsulate",
        "SharedSecretCiphertextBlob": "test_lifecycle_asymmetric.py::test_ml_kem_encapsulate_then_decapsulate",
        "EncapsulationAlgorithm": "test_lifecycle_asymmetric.py::test_ml_kem_encapsulate_then_decapsulate",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "Decrypt": {
        "CiphertextBlob": "test_aliases.py::test_update_alias_retargets_encrypt",
        "EncryptionContext": "test_crypto.py::test_encryption_context_round_trip",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "KeyId": "test_aliases.py::test_update_alias_retargets_encrypt",
        "EncryptionAlgorithm": "test_crypto.py::test_encrypt_decrypt_round_trip_without_key_id",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
        "DryRunModifiers": "test_member_behaviour.py::test_decrypt_dry_run_modifiers_ignore_ciphertext",
    },
    "DeleteAlias": {
        "AliasName": "test_aliases.py::test_alias_of_key_pending_deletion_can_be_moved_and_deleted",
    },
    "DeleteImportedKeyMaterial": {
        "KeyId": "test_lifecycle_import.py::test_token_cannot_be_used_twice",
        "KeyMaterialId": "test_imported_materials.py::test_delete_one_material_and_an_unknown_id_deletes_nothing",
    },
    "DeriveSharedSecret": {
        "KeyId": "test_lifecycle_asymmetric.py::test_derive_shared_secret_matches_local_ecdh",
        "KeyAgreementAlgorithm": "test_lifecycle_asymmetric.py::test_derive_shared_secret_matches_local_ecdh",
        "PublicKey": "test_lifecycle_asymmetric.py::test_derive_shared_secret_matches_local_ecdh",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "DescribeKey": {
        "KeyId": "test_aliases.py::test_create_alias_and_use_it",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
    },
    "DisableKey": {
        "KeyId": "test_crypto.py::test_disabled_key_refuses_crypto",
    },
    "DisableKeyRotation": {
        "KeyId": "test_lifecycle_rotation.py::test_disable_rotation",
    },
    "EnableKey": {
        "KeyId": "test_crypto.py::test_disabled_key_refuses_crypto",
    },
    "EnableKeyRotation": {
        "KeyId": "test_audit_records.py::test_maintenance_actions_are_service_events",
        "RotationPeriodInDays": "test_audit_records.py::test_maintenance_actions_are_service_events",
    },
    "Encapsulate": {
        "KeyId": "test_lifecycle_asymmetric.py::test_ml_kem_encapsulate_then_decapsulate",
        "EncapsulationAlgorithm": "test_lifecycle_asymmetric.py::test_ml_kem_encapsulate_then_decapsulate",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "Encrypt": {
        "KeyId": "test_aliases.py::test_update_alias_retargets_encrypt",
        "Plaintext": "test_aliases.py::test_update_alias_retargets_encrypt",
        "EncryptionContext": "test_authorization_scenarios.py::test_an_unknown_condition_operator_is_refused_and_changes_nothing",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "EncryptionAlgorithm": "test_crypto.py::test_encrypt_decrypt_round_trip_without_key_id",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "GenerateDataKey": {
        "KeyId": "test_aliases.py::test_alias_arn_works_in_encrypt_and_decrypt",
        "EncryptionContext": "test_crypto.py::test_generate_data_key",
        "NumberOfBytes": "test_crypto.py::test_key_pending_deletion_refuses_crypto",
        "KeySpec": "test_aliases.py::test_alias_arn_works_in_encrypt_and_decrypt",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "GenerateDataKeyPair": {
        "EncryptionContext": "test_lifecycle_asymmetric.py::test_generate_data_key_pair",
        "KeyId": "test_lifecycle_asymmetric.py::test_generate_data_key_pair",
        "KeyPairSpec": "test_lifecycle_asymmetric.py::test_generate_data_key_pair",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "GenerateDataKeyPairWithoutPlaintext": {
        "EncryptionContext": "test_lifecycle_asymmetric.py::test_generate_data_key_pair",
        "KeyId": "test_lifecycle_asymmetric.py::test_generate_data_key_pair",
        "KeyPairSpec": "test_lifecycle_asymmetric.py::test_generate_data_key_pair",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "GenerateDataKeyWithoutPlaintext": {
        "KeyId": "test_crypto.py::test_disabled_key_refuses_crypto",
        "EncryptionContext": "test_crypto.py::test_generate_data_key_without_plaintext",
        "KeySpec": "test_crypto.py::test_disabled_key_refuses_crypto",
        "NumberOfBytes": "test_crypto.py::test_key_pending_deletion_refuses_crypto",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "GenerateMac": {
        "Message": "test_lifecycle_asymmetric.py::test_generate_and_verify_mac",
        "KeyId": "test_lifecycle_asymmetric.py::test_generate_and_verify_mac",
        "MacAlgorithm": "test_lifecycle_asymmetric.py::test_generate_and_verify_mac",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "GenerateRandom": {
        "NumberOfBytes": "test_crypto.py::test_generate_random",
        "CustomKeyStoreId": "test_crypto.py::test_generate_random_in_unknown_custom_key_store",
    },
    "GetKeyLastUsage": {
        "KeyId": "test_key_last_usage.py::test_successful_crypto_calls_count_and_nothing_else",
    },
    "GetKeyPolicy": {
        "KeyId": "test_authorization_scenarios.py::test_an_unknown_condition_operator_is_refused_and_changes_nothing",
        "PolicyName": "test_authorization_scenarios.py::test_an_unknown_condition_operator_is_refused_and_changes_nothing",
    },
    "GetKeyRotationStatus": {
        "KeyId": "test_lifecycle_import.py::test_automatic_rotation_of_an_imported_key_is_unsupported",
    },
    "GetParametersForImport": {
        "KeyId": "test_lifecycle_import.py::test_get_parameters_for_import_per_wrapping_key_spec",
        "WrappingAlgorithm": "test_lifecycle_import.py::test_import_with_each_wrapping_algorithm",
        "WrappingKeySpec": "test_lifecycle_import.py::test_get_parameters_for_import_per_wrapping_key_spec",
    },
    "GetPublicKey": {
        "KeyId": "test_lifecycle_asymmetric.py::test_describe_key_lists_the_algorithms_of_the_spec",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
    },
    "ImportKeyMaterial": {
        "KeyId": "test_lifecycle_import.py::test_import_with_each_wrapping_algorithm",
        "ImportToken": "test_lifecycle_import.py::test_import_with_each_wrapping_algorithm",
        "EncryptedKeyMaterial": "test_lifecycle_import.py::test_import_with_each_wrapping_algorithm",
        "ValidTo": "test_lifecycle_import.py::test_import_with_each_wrapping_algorithm",
        "ExpirationModel": "test_lifecycle_import.py::test_import_with_each_wrapping_algorithm",
        "ImportType": "test_imported_materials.py::test_import_type_and_key_material_id_rules",
        "KeyMaterialDescription": "test_imported_materials.py::test_import_type_and_key_material_id_rules",
        "KeyMaterialId": "test_imported_materials.py::test_import_type_and_key_material_id_rules",
    },
    "ListAliases": {
        "KeyId": "test_aliases.py::test_list_aliases_for_unknown_key_is_not_found",
        "Limit": "test_aliases.py::test_list_aliases_pagination",
        "Marker": "test_aliases.py::test_list_aliases_pagination",
    },
    "ListGrants": {
        "Limit": "test_member_behaviour.py::test_list_grants_and_policies_and_retirable_grants_page",
        "Marker": "test_member_behaviour.py::test_list_grants_and_policies_and_retirable_grants_page",
        "KeyId": "test_grants.py::test_create_list_retire_by_token",
        "GrantId": "test_grants.py::test_create_list_retire_by_token",
        "GranteePrincipal": "test_grants.py::test_create_list_retire_by_token",
    },
    "ListKeyPolicies": {
        "KeyId": "test_key_policies.py::test_put_get_and_list_key_policies",
        "Limit": "test_member_behaviour.py::test_list_grants_and_policies_and_retirable_grants_page",
        "Marker": "test_member_behaviour.py::test_list_grants_and_policies_and_retirable_grants_page",
    },
    "ListKeyRotations": {
        "KeyId": "test_lifecycle_rotation.py::test_on_demand_rotation_limit_and_list_key_rotations_pagination",
        "IncludeKeyMaterial": "test_lifecycle_rotation.py::test_list_key_rotations_of_a_never_rotated_key",
        "Limit": "test_lifecycle_rotation.py::test_on_demand_rotation_limit_and_list_key_rotations_pagination",
        "Marker": "test_lifecycle_rotation.py::test_on_demand_rotation_limit_and_list_key_rotations_pagination",
    },
    "ListKeys": {
        "Limit": "test_keys_lifecycle.py::test_create_key_with_malformed_policy_is_refused",
        "Marker": "test_keys_lifecycle.py::test_list_keys_with_garbage_marker",
        "ResourceOwners": "test_member_behaviour.py::test_list_keys_resource_owners",
    },
    "ListResourceTags": {
        "KeyId": "test_keys_lifecycle.py::test_create_key_with_description_and_tags",
        "Limit": "test_keys_lifecycle.py::test_list_resource_tags_pagination",
        "Marker": "test_keys_lifecycle.py::test_list_resource_tags_pagination",
    },
    "ListRetirableGrants": {
        "Limit": "test_member_behaviour.py::test_list_grants_and_policies_and_retirable_grants_page",
        "Marker": "test_grants.py::test_list_retirable_grants_across_keys",
        "RetiringPrincipal": "test_grants.py::test_list_retirable_grants_across_keys",
    },
    "PutKeyPolicy": {
        "KeyId": "test_authorization_scenarios.py::test_scenario",
        "PolicyName": "test_authorization_scenarios.py::test_scenario",
        "Policy": "test_authorization_scenarios.py::test_scenario",
        "BypassPolicyLockoutSafetyCheck": "test_authorization_scenarios.py::test_scenario",
    },
    "ReEncrypt": {
        "CiphertextBlob": "test_crypto.py::test_disabled_key_refuses_crypto",
        "SourceEncryptionContext": "test_crypto.py::test_re_encrypt_to_another_key_with_contexts",
        "SourceKeyId": "test_crypto.py::test_re_encrypt_to_another_key_with_contexts",
        "DestinationKeyId": "test_crypto.py::test_disabled_key_refuses_crypto",
        "DestinationEncryptionContext": "test_crypto.py::test_re_encrypt_to_another_key_with_contexts",
        "SourceEncryptionAlgorithm": "test_crypto.py::test_re_encrypt_to_another_key_with_contexts",
        "DestinationEncryptionAlgorithm": "test_crypto.py::test_re_encrypt_to_another_key_with_contexts",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
        "DryRunModifiers": "test_member_behaviour.py::test_re_encrypt_dry_run_modifiers_ignore_ciphertext",
    },
    "RetireGrant": {
        "GrantToken": "test_grants.py::test_create_list_retire_by_token",
        "KeyId": "test_grants.py::test_create_list_retire_by_token",
        "GrantId": "test_grants.py::test_create_list_retire_by_token",
        "DryRun": "test_grants.py::test_dry_run_checks_everything_and_changes_nothing",
    },
    "RevokeGrant": {
        "KeyId": "test_grants.py::test_retire_by_key_and_grant_id_and_revoke",
        "GrantId": "test_grants.py::test_retire_by_key_and_grant_id_and_revoke",
        "DryRun": "test_grants.py::test_dry_run_checks_everything_and_changes_nothing",
    },
    "ReplicateKey": {
        "KeyId": "test_multi_region_keys.py::test_multi_region_life_cycle_across_three_regions",
        "ReplicaRegion": "test_multi_region_keys.py::test_multi_region_life_cycle_across_three_regions",
        "Description": "test_multi_region_keys.py::test_multi_region_life_cycle_across_three_regions",
        "Tags": "test_multi_region_keys.py::test_multi_region_life_cycle_across_three_regions",
        "Policy": "test_multi_region_keys.py::test_asymmetric_and_hmac_keys_replicated_with_the_aws_cli",
        "BypassPolicyLockoutSafetyCheck": "test_multi_region_keys.py::test_asymmetric_and_hmac_keys_replicated_with_the_aws_cli",
    },
    "RotateKeyOnDemand": {
        "KeyId": "test_lifecycle_deletion.py::test_deletion_after_the_window_shreds_the_key",
    },
    "ScheduleKeyDeletion": {
        "KeyId": "test_aliases.py::test_create_alias_for_key_pending_deletion_is_invalid_state",
        "PendingWindowInDays": "test_aliases.py::test_create_alias_for_key_pending_deletion_is_invalid_state",
    },
    "Sign": {
        "KeyId": "test_lifecycle_asymmetric.py::test_ml_dsa_65",
        "Message": "test_lifecycle_asymmetric.py::test_ml_dsa_65",
        "MessageType": "test_lifecycle_asymmetric.py::test_sign_raw_and_digest_verify_locally",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "SigningAlgorithm": "test_lifecycle_asymmetric.py::test_ml_dsa_65",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "TagResource": {
        "KeyId": "test_history_cli.py::test_key_at_keys_at_and_timeline",
        "Tags": "test_history_cli.py::test_key_at_keys_at_and_timeline",
    },
    "UntagResource": {
        "KeyId": "test_keys_lifecycle.py::test_tag_untag_and_list",
        "TagKeys": "test_keys_lifecycle.py::test_tag_untag_and_list",
    },
    "UpdateAlias": {
        "AliasName": "test_aliases.py::test_update_alias_retargets_encrypt",
        "TargetKeyId": "test_aliases.py::test_update_alias_retargets_encrypt",
    },
    "UpdateKeyDescription": {
        "KeyId": "test_keys_lifecycle.py::test_update_key_description",
        "Description": "test_keys_lifecycle.py::test_update_key_description",
    },
    "UpdatePrimaryRegion": {
        "KeyId": "test_multi_region_keys.py::test_multi_region_life_cycle_across_three_regions",
        "PrimaryRegion": "test_multi_region_keys.py::test_multi_region_life_cycle_across_three_regions",
    },
    "Verify": {
        "KeyId": "test_lifecycle_asymmetric.py::test_ml_dsa_65",
        "Message": "test_lifecycle_asymmetric.py::test_ml_dsa_65",
        "MessageType": "test_lifecycle_asymmetric.py::test_sign_raw_and_digest_verify_locally",
        "Signature": "test_lifecycle_asymmetric.py::test_ml_dsa_65",
        "SigningAlgorithm": "test_lifecycle_asymmetric.py::test_ml_dsa_65",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
    "VerifyMac": {
        "Message": "test_lifecycle_asymmetric.py::test_generate_and_verify_mac",
        "KeyId": "test_lifecycle_asymmetric.py::test_generate_and_verify_mac",
        "MacAlgorithm": "test_lifecycle_asymmetric.py::test_generate_and_verify_mac",
        "Mac": "test_lifecycle_asymmetric.py::test_generate_and_verify_mac",
        "GrantTokens": "test_member_behaviour.py::test_grant_tokens_are_checked_by_every_operation_that_takes_them",
        "DryRun": "test_member_behaviour.py::test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it",
    },
}

SERVED = sorted(op for op in MODEL.operation_names if op in HANDLERS)
UNSERVED = sorted(set(MODEL.operation_names) - set(HANDLERS))


def _model_members(operation: str) -> list[str]:
    shape = MODEL.operation_model(operation).input_shape
    return list(shape.members) if shape is not None else []


def test_every_member_of_every_served_operation_is_accounted_for():
    unaccounted = [(op, m) for op in SERVED for m in _model_members(op) if m not in MEMBERS.get(op, {})]
    assert not unaccounted, f"members parsed but neither honoured nor refused: classify them in api/members.py: {unaccounted}"
    stale = [(op, m) for op, members in MEMBERS.items() for m in members if m not in _model_members(op)]
    assert not stale, f"api/members.py names members botocore's model does not have: {stale}"
    assert set(MEMBERS) <= set(HANDLERS), "api/members.py names operations keyledger does not serve"


def test_a_member_not_in_the_table_is_refused_at_run_time():
    with pytest.raises(UnsupportedOperationError, match="NewMember"):
        refuse_unhonoured("Encrypt", {"KeyId": "k", "Plaintext": b"p", "NewMember": True})


@lru_cache(maxsize=None)
def _test_sources(file_name: str) -> tuple[str, dict[str, str]]:
    source = (E2E / file_name).read_text()
    tree = ast.parse(source)
    # The helpers a test calls live in its module or in the tests.e2e modules it imports them from.
    helpers = [(E2E / f"{node.module.rsplit('.', 1)[1]}.py").read_text() for node in tree.body
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.e2e.")]
    return "\n".join([source, *helpers]), {node.name: ast.get_source_segment(source, node) or "" for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def _honoured(operation: str) -> list[str]:
    return [m for m, rule in MEMBERS[operation].items() if rule is None or rule.partial]


@pytest.mark.parametrize("operation", SERVED)
def test_every_honoured_member_is_named_by_a_behaviour_test(operation):
    named = BEHAVIOUR.get(operation, {})
    assert sorted(named) == sorted(_honoured(operation)), \
        f"{operation}: behaviour tests named for {sorted(named)}, honoured members are {sorted(_honoured(operation))}"
    for member, test in named.items():
        file_name, _, function = test.partition("::")
        module, functions = _test_sources(file_name)
        assert function in functions, f"{operation}.{member}: {test} does not exist"
        # The test (or the module's helpers it calls) sends the member, to this operation.
        body = functions[function]
        assert member in body or member in module, f"{operation}.{member}: {test} never sends {member}"
        assert xform_name(operation) in body or operation in body or xform_name(operation) in module, \
            f"{operation}.{member}: {test} never calls {operation}"


# -- refused members, refused by a live server --------------------------------------------------------

_STRINGS = {"AliasNameType": "alias/member", "KeyIdType": "1234abcd-12ab-34cd-56ef-1234567890ab",
            "XksKeyIdType": "xks-key-1", "KeyMaterialDescriptionType": "described", "BackingKeyIdType": "0" * 64,
            "RegionType": "us-west-2", "PrincipalIdType": "arn:aws:iam::111122223333:root",
            "ServicePrincipalType": "service.amazonaws.com", "GrantNameType": "member", "PolicyNameType": "default",
            "AccountIdType": "111122223333", "MarkerType": "m",
            "XksProxyUriEndpointType": "https://xks.example.com", "XksProxyUriPathType": "/example/kms/xks/v1",
            "XksProxyVpcEndpointServiceNameType": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0",
            "XksProxyAuthenticationAccessKeyIdType": "ABCDEFGHIJKLMNOPQRST",
            "XksProxyAuthenticationRawSecretAccessKeyType": "a" * 43,
            "CustomKeyStoreNameType": "member-store", "CloudHsmClusterIdType": "cluster-2a3b4c5d6e7",
            "CustomKeyStoreIdType": "cks-1234567890abcdef0"}
_TRIGGERS: dict[tuple[str, str], Any] = {("CreateCustomKeyStore", "XksProxyConnectivity"): "VPC_ENDPOINT_SERVICE",
                                         ("UpdateCustomKeyStore", "XksProxyConnectivity"): "VPC_ENDPOINT_SERVICE"}


def _value(shape: Any) -> Any:
    """A value of ``shape`` that passes the model's validation."""
    t, meta = shape.type_name, shape.metadata
    if t == "structure":
        return {name: _value(member) for name, member in shape.members.items() if name in shape.required_members}
    if t == "list":
        return [_value(shape.member)] * max(meta.get("min", 1), 1)
    if t == "map":
        return {"k": _value(shape.value)}
    if t == "string":
        if getattr(shape, "enum", None):
            return shape.enum[0]
        if shape.name in _STRINGS:
            return _STRINGS[shape.name]
        assert "pattern" not in meta, f"add a valid {shape.name} to _STRINGS"
        return "a" * max(meta.get("min", 1), 1)
    if t == "blob":
        return b"b" * max(meta.get("min", 1), 1)
    if t in ("integer", "long"):
        return max(meta.get("min", 1), 1)
    if t == "boolean":
        return True
    if t == "timestamp":
        return datetime.now(timezone.utc) + timedelta(days=1)
    raise AssertionError(f"no value for {t}")


REFUSED = [(op, m) for op, members in MEMBERS.items() for m, rule in members.items() if rule is not None]


@pytest.mark.parametrize("operation,member", REFUSED, ids=[f"{o}.{m}" for o, m in REFUSED])
def test_refused_members_are_refused_by_a_live_server(shared_server, operation, member):
    rule = MEMBERS[operation][member]
    assert isinstance(rule, Refusal)
    shape = MODEL.operation_model(operation).input_shape
    request = _value(shape)
    request[member] = _TRIGGERS.get((operation, member), _value(shape.members[member]))
    client = shared_server.client()
    with pytest.raises(ClientError) as refused:
        getattr(client, xform_name(operation))(**request)
    assert code(refused.value) == rule.error.code
    assert refused.value.response["Error"]["Message"] == rule.message


def test_operations_not_served_answer_unknown_operation(shared_server):
    """Operations keyledger does not serve are refused as a whole, whatever their members."""
    client = unvalidated_client(shared_server)
    for operation in UNSERVED:
        with pytest.raises(ClientError) as refused:
            getattr(client, xform_name(operation))(**_value(MODEL.operation_model(operation).input_shape))
        assert code(refused.value) == "UnknownOperationException", operation
