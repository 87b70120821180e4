"""Schemathesis against the API's own OpenAPI document, in-process (WSGI), as an operator
and as nobody: no 500, no success without credentials, responses that match the schema.

The cluster has no running node here, so reads answered by the leader are 503 and a
submission waits for its (short, forced) timeout: both are documented answers of a cluster
that cannot answer, not server errors. Everything else of 5xx fails the test.
"""

from __future__ import annotations

import os
import zlib

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane.clusters import tokens
from controlplane.clusters.models import Cluster

# Documented answers of a cluster with no live leader (see the module docstring).
UNAVAILABLE = {503, 504}
# Transactional: a submission gives its database connection back while it waits.
pytestmark = pytest.mark.django_db(transaction=True)
# Generated cases per operation and actor (the schema's own examples run besides, not
# capped by this). `make fuzz` runs 100.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(autouse=True)
def short_leader_reads(settings):
    """No node runs here: a read answered by the leader waits its whole timeout for a 503
    (3 s by default; the schema's examples alone make dozens of such reads)."""
    settings.LEADER_READ_TIMEOUT = 0.1


@pytest.fixture
def operator_token(operator) -> str:
    return tokens.issue(operator.username).token


def aim_at_the_cluster(case, cluster: Cluster) -> None:
    """Half of the cases name the real cluster, so that more than 404s are exercised; the
    half is chosen by a checksum of the body, the same in every run (hash() of a string is
    not). Waits are cut short: a submission waits 0.1 s for its commit (the default 5 s,
    for a leader that is not there), and a role change at most 0.5 s for its target to
    catch up (10 s by default, and generated bodies ask up to 120 s: such a case on the
    real cluster waited a minute)."""
    if case.path_parameters and "name" in case.path_parameters and zlib.crc32(repr(case.body).encode()) % 2 == 0:
        case.path_parameters["name"] = cluster.name
    if not isinstance(case.body, dict):
        return
    if "commands" in case.body:
        case.body["timeout"] = 0.1
    elif case.path.endswith(("/leader/", "/switchover/")):  # the role changes
        timeout = case.body.get("timeout")
        if timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0.5):
            case.body["timeout"] = 0.5  # the least a role change accepts: still a valid body


def server_errors_other_than_unavailable(response) -> bool:
    return response.status_code >= 500 and response.status_code not in UNAVAILABLE


@schema.parametrize()
@FUZZ_SETTINGS
def test_as_an_operator(case, cluster, operator_token):
    aim_at_the_cluster(case, cluster)
    response = case.call(headers={"Authorization": f"Token {operator_token}"})
    assert not server_errors_other_than_unavailable(response), response.text[:500]
    if response.status_code not in UNAVAILABLE:
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance],
        )  # fmt: skip


@schema.parametrize()
@FUZZ_SETTINGS
def test_as_nobody(case, cluster):
    aim_at_the_cluster(case, cluster)
    response = case.call(headers={"Authorization": ""})
    assert not server_errors_other_than_unavailable(response), response.text[:500]
    assert response.status_code >= 400, f"{case.method} {case.formatted_path} succeeded without credentials"
