-- Patients (SPEC.md "Patients"). Emails are stored lower-cased and unique.
CREATE TABLE patients (
    id              uuid PRIMARY KEY,
    name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    email           text NOT NULL,
    address         text NOT NULL,
    date_of_birth   date NOT NULL,
    registered_date date NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX patients_email_unique ON patients (lower(email));
CREATE INDEX patients_name_order ON patients (lower(name), id);

-- What each write still has to hand on (its Kafka event, its billing call), written in the same
-- statement as the write and deleted once delivered. `seq` orders one patient's rows within a
-- channel; `lease_until` is a relay's claim on a row.
CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    patient_id  uuid NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('event', 'billing')),
    kind        text NOT NULL CHECK (kind IN ('event', 'billing-open', 'billing-close')),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    last_error  text
);
CREATE INDEX outbox_by_patient ON outbox (patient_id, channel, seq);
