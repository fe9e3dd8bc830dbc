"""Schemathesis hooks for the conformance test (tests/tests/schemathesis.rs).

The gateway limits requests per token subject, and requests without a valid token per client
address (`X-Forwarded-For`), 5/s each by default. A run sends thousands of requests, so each
request comes from a client of its own: it takes the next token of a pool the test minted (each
with a subject of its own) and a client address of its own. The limit stays on, and no answer is
a 429 that hides what the route would have said (the rate limit has tests of its own).
"""
import itertools
import os

import schemathesis

with open(os.environ["PM_CONFORMANCE_TOKENS"], encoding="utf-8") as pool:
    _TOKENS = itertools.cycle(pool.read().split())


@schemathesis.auth(refresh_interval=None)
class EachRequestItsOwnSubject:
    def get(self, case, context):
        return next(_TOKENS)

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


_ADDRESSES = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count(1))


@schemathesis.hook
def before_call(context, case, kwargs):
    case.headers = case.headers or {}
    case.headers["X-Forwarded-For"] = next(_ADDRESSES)
