"""Schemathesis hooks for the conformance test (tests/tests/conformance.rs).

The gateway limits requests per token subject (5/s by default). A run sends thousands of
requests, so each request takes the next token of a pool the test minted, each with a subject of
its own: the limit stays on, and no answer is a 429 that hides what the route would have said.
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
