-- Schema version 2: scheduled rooms and a fast PIN-failure count.
-- A room with both bounds NULL can be used at any time.

ALTER TABLE rooms ADD COLUMN starts_at REAL;
ALTER TABLE rooms ADD COLUMN ends_at REAL;

-- pins.failures_exhausted() counts wrong PINs per source in a sliding window on every call.
CREATE INDEX rejections_pin_failures ON rejections (source, at) WHERE reason = 'wrong_pin';
