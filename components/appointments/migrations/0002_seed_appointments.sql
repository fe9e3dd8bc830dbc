-- The seed's two appointments for John Doe (a seed patient), moved to the future: a week and
-- two weeks after the day this migration runs. His name arrives with his PATIENT_CREATED event
-- (patients announces the seed patients once); the copy row below only lets the seed rows
-- exist before that, and any event replaces it (its time is the earliest possible).
INSERT INTO patient_copies (id, name, email, occurred_at)
VALUES ('123e4567-e89b-12d3-a456-426614174000', 'John Doe', 'john.doe@example.com', '-infinity')
ON CONFLICT DO NOTHING;

INSERT INTO appointments (id, patient_id, start_time, end_time, reason)
VALUES
    ('8f2b6c1e-5d3a-4e7f-9a10-000000000001', '123e4567-e89b-12d3-a456-426614174000',
     date_trunc('day', now()) + interval '7 days 9 hours',
     date_trunc('day', now()) + interval '7 days 9 hours 30 minutes', 'Annual check-up'),
    ('8f2b6c1e-5d3a-4e7f-9a10-000000000002', '123e4567-e89b-12d3-a456-426614174000',
     date_trunc('day', now()) + interval '14 days 10 hours',
     date_trunc('day', now()) + interval '14 days 11 hours', 'Follow-up consultation')
ON CONFLICT DO NOTHING;
