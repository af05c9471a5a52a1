-- Every change to a terminal's or a merchant's row bumps its row_version: a
-- trigger, so every write path, the CLI and another instance alike.  A switch
-- then checks many cached rows in one query, instead of reading each again
-- once its cache bound has passed (SqlStore._revalidate).
-- posp never deletes these rows; one deleted and created again outside posp
-- starts again at 0, so restart the switches after such a change.
ALTER TABLE terminals ADD COLUMN row_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE merchants ADD COLUMN row_version BIGINT NOT NULL DEFAULT 0;
CREATE FUNCTION posp_row_version() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.row_version := OLD.row_version + 1; RETURN NEW; END $$;
CREATE TRIGGER terminals_row_version BEFORE UPDATE ON terminals FOR EACH ROW EXECUTE FUNCTION posp_row_version();
CREATE TRIGGER merchants_row_version BEFORE UPDATE ON merchants FOR EACH ROW EXECUTE FUNCTION posp_row_version();
