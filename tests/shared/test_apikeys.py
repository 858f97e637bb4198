from hypothesis import given
from hypothesis import strategies as st

from shared import apikeys

TENANT_IDS = st.from_regex(apikeys.TENANT_ID_PATTERN, fullmatch=True)


@given(TENANT_IDS)
def test_generated_key_parses_to_its_tenant(tenant_id: str) -> None:
    key = apikeys.generate_api_key(tenant_id)

    assert apikeys.parse_api_key(key).tenant_id == tenant_id
