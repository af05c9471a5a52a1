-- Every change to a terminal's or a merchant's row bumps its row_version: a
-- trigger, so every write path, the CLI and another process alike.  A switch
-- then checks many cached rows in one query, instead of reading each again
-- once its cache bound has passed (SqlStore._revalidate).
-- posp never deletes these rows; one deleted and created again outside posp
-- starts again at 0, so restart the switches after such a change.
ALTER TABLE terminals ADD COLUMN row_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE merchants ADD COLUMN row_version INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER terminals_row_version AFTER UPDATE ON terminals FOR EACH ROW WHEN NEW.row_version = OLD.row_version BEGIN UPDATE terminals SET row_version = OLD.row_version + 1 WHERE terminal_id = NEW.terminal_id; END;
CREATE TRIGGER merchants_row_version AFTER UPDATE ON merchants FOR EACH ROW WHEN NEW.row_version = OLD.row_version BEGIN UPDATE merchants SET row_version = OLD.row_version + 1 WHERE merchant_id = NEW.merchant_id; END;
