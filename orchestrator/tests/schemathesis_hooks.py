"""Schemathesis hooks for orchestrator/tests/schemathesis.rs.

A checkout's Idempotency-Key makes its first decision final: the same key with another body is
refused `422 idempotency_key_reused`, as the contract says. Generated requests reuse keys for
different bodies by chance (the parameter's example, the coverage phase's smallest values), a
reuse the schema cannot express, so the check that schema-valid requests are accepted would fail
on the contract itself. Each schema-valid request therefore gets a key of its own; requests
generated to be invalid keep theirs, so invalid keys are still tried. Key reuse is tried by
orchestrator/tests/idempotency.rs.
"""

import uuid

import schemathesis


@schemathesis.hook
def before_call(ctx, case, kwargs):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == "idempotency-key":
            case.headers[name] = str(uuid.uuid4())
