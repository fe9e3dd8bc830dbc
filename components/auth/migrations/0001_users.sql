-- Staff accounts. Emails are unique regardless of case; passwords are stored only as bcrypt
-- hashes. The seed admin is created by the auth component from configuration, never from SQL.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('ADMIN', 'CLINICIAN')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));
