-- Appointments (SPEC.md "Appointments") and the local copy of patients they are booked for.

-- `patient_id WITH =` in a GiST exclusion constraint needs btree_gist (a trusted extension).
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Patients as their events on topic `patient` describe them. `occurred_at` is the newest event
-- applied, so a redelivered older event cannot overwrite a newer name; a deleted patient stays
-- (deleted) so that no late event brings it back.
CREATE TABLE patient_copies (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    occurred_at timestamptz NOT NULL
);

CREATE TABLE appointments (
    id          uuid PRIMARY KEY,
    patient_id  uuid NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    reason      text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 255),
    status      text NOT NULL DEFAULT 'SCHEDULED' CHECK (status IN ('SCHEDULED', 'CANCELLED')),
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time AND end_time - start_time <= interval '8 hours'),
    -- Two scheduled appointments of one patient never overlap ([start, end): back to back is
    -- fine). The database decides, so two concurrent bookings cannot both succeed.
    CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
        patient_id WITH =, tstzrange(start_time, end_time) WITH &&
    ) WHERE (status = 'SCHEDULED')
);
CREATE INDEX appointments_by_start ON appointments (start_time, id);
