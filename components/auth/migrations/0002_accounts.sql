-- Accounts an admin can disable and enable again (issue 20). A disabled user cannot sign in,
-- and the sessions they had are ended in Redis (kit::tokens::SESSIONS_BUCKET).
ALTER TABLE users ADD COLUMN enabled boolean NOT NULL DEFAULT true;

-- Failed sign-ins per email as typed (lower-cased), whether or not a user has it, so a locked
-- address tells an attacker nothing about the account. `locked_until` grows with each failure
-- past the first few (auth's sessions.rs has the policy); a success removes the row. A failure
-- a day after the last starts the count again.
CREATE TABLE login_failures (
    email        text        PRIMARY KEY,
    failures     integer     NOT NULL,
    last_failure timestamptz NOT NULL,
    locked_until timestamptz
);
