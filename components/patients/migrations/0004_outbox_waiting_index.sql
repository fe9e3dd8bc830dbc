-- The relay claims one channel's rows in `seq` order (patients' src/outbox.rs): this index finds
-- them without passing over the other channel's, which pile up while their target is down.
CREATE INDEX outbox_waiting ON outbox (channel, seq);
