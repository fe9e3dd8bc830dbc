-- One billing account per patient (SPEC.md "Billing"). Accounts are closed, never deleted.
CREATE TABLE accounts (
    account_id uuid PRIMARY KEY,
    patient_id uuid NOT NULL UNIQUE,
    name       text NOT NULL,
    email      text NOT NULL,
    status     text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'CLOSED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    closed_at  timestamptz
);
