-- Chip cards (issue 16): the entry mode of each journal entry (F22 digits 1-2), so
-- the TC reconciliation at batch close knows which approved entries were chip reads.
ALTER TABLE journal ADD COLUMN entry_mode TEXT NOT NULL DEFAULT '';
