-- Branch images (catalog version 14), applied after client_information_schema.sql.
--
-- A branch's copy of a table it inherited, made by VACUUM on the branch (heliosdb.branching.images):
-- the branch's view reads it while the branch has written no row of the table after `lsn`. The
-- relation is hdb_b<branch_id>._hdb_img<table_id>; `columns` is the table's shape it was made for,
-- `indexes` the indexes it has (CREATE/DROP INDEX on the branch reach it at the next VACUUM).
CREATE TABLE IF NOT EXISTS heliosdb._images (
    branch_id integer NOT NULL,
    table_id integer NOT NULL,
    -- which build: the view names it, so a snapshot older than the build never reads its rows
    gen bigint NOT NULL DEFAULT txid_current(),
    lsn bigint NOT NULL,
    -- whether the view reads it (a new image is put there in a short transaction of its own)
    installed boolean NOT NULL DEFAULT false,
    columns text NOT NULL,
    indexes text NOT NULL DEFAULT '[]',
    built_at timestamptz NOT NULL DEFAULT now(),
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (branch_id, table_id)
);

UPDATE heliosdb._meta SET value = '14' WHERE key = 'catalog_version';
