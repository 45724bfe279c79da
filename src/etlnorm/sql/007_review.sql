-- What the review page shows and does (review/).

-- The term's definition (OBO def:), shown to curators; filled by the next `etlnorm ontology load`.
ALTER TABLE etlnorm.term ADD COLUMN IF NOT EXISTS definition text;

-- The key column the run batched by, the terms a term-only run was limited to (the review page's
-- "apply now"; NULL: the whole column), and the Prefect flow run that ran it (NULL outside Prefect).
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS key_column text;
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS only_terms text[];
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS flow_run_id uuid;
