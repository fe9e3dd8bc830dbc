-- The seed's patients announced once on topic `patient` (a PATIENT_CREATED event each, relayed
-- from the outbox like any other), so consumers that keep their own view of patients
-- (appointments' names, analytics' counts) know them as they know every patient created later.
INSERT INTO outbox (id, patient_id, channel, kind, payload)
SELECT gen_random_uuid(), p.id, 'event', 'event', jsonb_build_object(
           'eventId', gen_random_uuid()::text,
           'eventType', 'PATIENT_CREATED',
           'patientId', p.id::text,
           'name', p.name,
           'email', p.email,
           'occurredAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'registeredDate', p.registered_date::text)
FROM patients p
WHERE p.id IN ('123e4567-e89b-12d3-a456-426614174000', '123e4567-e89b-12d3-a456-426614174001',
               '123e4567-e89b-12d3-a456-426614174002', '123e4567-e89b-12d3-a456-426614174003',
               '123e4567-e89b-12d3-a456-426614174004', '223e4567-e89b-12d3-a456-426614174005',
               '223e4567-e89b-12d3-a456-426614174006', '223e4567-e89b-12d3-a456-426614174007',
               '223e4567-e89b-12d3-a456-426614174008', '223e4567-e89b-12d3-a456-426614174009',
               '223e4567-e89b-12d3-a456-426614174010', '223e4567-e89b-12d3-a456-426614174011',
               '223e4567-e89b-12d3-a456-426614174012', '223e4567-e89b-12d3-a456-426614174013',
               '223e4567-e89b-12d3-a456-426614174014')
ORDER BY p.registered_date, p.id;
