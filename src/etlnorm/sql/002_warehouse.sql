-- Mapping cache and run records of `etlnorm run`.

-- One row per (ontology, raw spelling). term_md5 keys it because raw terms can exceed a btree
-- entry; norm_term is the normalized string every spelling of it shares.
CREATE TABLE IF NOT EXISTS etlnorm.mapping (
    ontology    text NOT NULL,
    term_md5    uuid NOT NULL,
    term        text NOT NULL,
    norm_term   text NOT NULL,
    release     text NOT NULL,            -- ontology release the answer was computed against
    id          text,
    label       text,
    confidence  real,                     -- NULL for method 'empty'
    method      text NOT NULL,
    model       text,                     -- provenance: encoder / LLM used
    adapter     text,
    run_id      uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ontology, term_md5)
);
-- The candidates (top-k, calibrated scores) of each answer, abstentions included: what a reviewer picks from.
ALTER TABLE etlnorm.mapping ADD COLUMN IF NOT EXISTS candidates jsonb;
CREATE INDEX IF NOT EXISTS mapping_norm_term_idx ON etlnorm.mapping USING hash (norm_term);

CREATE TABLE IF NOT EXISTS etlnorm.run (
    run_id          uuid PRIMARY KEY,
    table_name      text NOT NULL,        -- schema-qualified, as found in the catalog
    column_name     text NOT NULL,
    ontology        text NOT NULL,
    release         text NOT NULL,
    prefix          text NOT NULL,
    status          text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    rows_seen       bigint,
    rows_updated    bigint,
    distinct_terms  bigint,               -- distinct non-empty terms needing an answer
    new_terms       bigint,               -- of those, normalized in this run
    cache_hits      bigint,               -- of those, answered by the cache
    methods         jsonb,                -- rows per method in the table after the run
    mapped_rows     bigint,
    mean_confidence real,
    timings         jsonb,                -- seconds per phase
    error           text
);
-- The key column the run batched by, the terms a term-only run was limited to (the review page's
-- "apply now"; NULL: the whole column), and the Prefect flow run that ran it (NULL outside Prefect).
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS key_column text;
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS only_terms text[];
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS flow_run_id uuid;
CREATE INDEX IF NOT EXISTS run_target_idx ON etlnorm.run (table_name, column_name, ontology, started_at DESC);

-- etlnorm.mapping_review (abstentions, low confidence, curated IDs gone obsolete): 005_curation.sql.
-- Cached answers computed against an older release than the one loaded now.
CREATE OR REPLACE VIEW etlnorm.stale_mapping AS
SELECT m.ontology, m.term, m.release AS mapped_release, o.release AS current_release
FROM etlnorm.mapping m JOIN etlnorm.ontology o ON o.name = m.ontology
WHERE m.release IS DISTINCT FROM o.release;

-- Coverage of each normalized column, as measured at the end of its latest completed run.
-- mapped_of_nonblank leaves NULL and blank terms (method 'empty') out of the denominator; mapped_of_all keeps them.
DROP VIEW IF EXISTS etlnorm.coverage;
CREATE VIEW etlnorm.coverage AS
SELECT DISTINCT ON (r.table_name, r.column_name, r.ontology)
       r.table_name, r.column_name, r.ontology, r.release,
       r.rows_seen AS rows, coalesce((r.methods ->> 'empty')::bigint, 0) AS blank_rows, r.mapped_rows AS mapped,
       round(r.mapped_rows::numeric
             / nullif(r.rows_seen - coalesce((r.methods ->> 'empty')::bigint, 0), 0), 4) AS mapped_of_nonblank,
       round(r.mapped_rows::numeric / nullif(r.rows_seen, 0), 4) AS mapped_of_all,
       r.methods AS rows_by_method, r.mean_confidence, r.finished_at AS measured_at
FROM etlnorm.run r
WHERE r.status = 'completed'
ORDER BY r.table_name, r.column_name, r.ontology, r.finished_at DESC;
