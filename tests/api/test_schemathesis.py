"""Schemathesis over /openapi.json against the ASGI app (SPEC section 10): with a global_admin token of
contoso, generated requests, valid and invalid, never get a 5xx, and every answer conforms to the
document: a documented status, the documented content type, headers and body schema; and invalid
requests are refused.

Bounded: MAX_EXAMPLES examples per operation and generation mode, no shrinking (a failure is reported
with the first example found). The tenant in paths is contoso (by id), the plan and product are the
catalog's, so that generated requests reach the handlers rather than stopping at 404.

(Schemathesis' own pytest integration, `schemathesis.pytest.from_fixture`, does not run under pytest 9
here, so the operations are driven with Hypothesis directly, which is also what keeps all operations on
one app and one database per backend.)
"""

from __future__ import annotations

import time
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.support import PLAN, PRODUCT, Seed

MAX_EXAMPLES = 25


def invalid_data_is_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' negative_data_rejection, with 413 counted as a refusal: a generated body over
    1 MiB is refused for its size before anything looks at it (SPEC section 2)."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)  # type: ignore[no-any-return]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    invalid_data_is_refused,
]


def _seed(api: Any) -> None:
    """Some data to find: seats, users, a licensed nested group."""
    seed = Seed(api, api.tenant)
    seed.buy(50)
    users = [seed.user()["id"] for _ in range(5)]
    seed.assign(users=users[:2])
    inner = seed.group("Inner", users=users[2:4])
    seed.assign(groups=[seed.group("Outer", users=users[4:], groups=[inner])])
    api.drain()


def _pinned(api: Any, operation: Any) -> dict[str, str]:
    values = {"t": api.tenant, "plan": PLAN, "p": PRODUCT, "product_id": PRODUCT, "productId": PRODUCT}
    names = {p.name for p in operation.path_parameters}
    return {k: v for k, v in values.items() if k in names}


def _run(api: Any, operation: Any, mode: GenerationMode) -> str | None:
    strategy = operation.as_strategy(mode, path_parameters=_pinned(api, operation))
    headers = api.headers("global_admin")

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        fuzz()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request can be generated"
        return None
    except BaseException as exc:  # a failed check (an exception group) or a server error
        return str(exc)[:2500]
    return None


def test_fuzzed_requests_get_no_5xx_and_answers_conform_to_the_schema(api):
    _seed(api)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    failures = []
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _run(api, operation, mode)
            if failure:
                failures.append(f"=== {operation.label} [{mode.value}]\n{failure}")
    elapsed = time.monotonic() - started
    assert not failures, f"{len(failures)} failing operations ({elapsed:.0f}s):\n" + "\n".join(failures)
