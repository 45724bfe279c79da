-- Ontology store: one current release per ontology, replaced atomically by `etlnorm ontology load`.
CREATE SCHEMA IF NOT EXISTS etlnorm;

CREATE TABLE IF NOT EXISTS etlnorm.ontology (
    name        text PRIMARY KEY,
    release     text NOT NULL,            -- data-version of the OBO file, or a content hash
    source      text NOT NULL,            -- URL, path, or pinned wheel it came from
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    n_terms     integer NOT NULL,
    n_obsolete  integer NOT NULL,
    n_synonyms  integer NOT NULL,
    n_alt_ids   integer NOT NULL
);

CREATE TABLE IF NOT EXISTS etlnorm.term (
    ontology    text NOT NULL REFERENCES etlnorm.ontology (name) ON DELETE CASCADE,
    id          text NOT NULL,            -- HP:0001250, GO:0006915, or an HGNC symbol (TP53)
    label       text,
    namespace   text,                     -- GO aspect; HGNC locus type
    obsolete    boolean NOT NULL DEFAULT false,
    replaced_by text,
    consider    text[] NOT NULL DEFAULT '{}',
    accession   text,                     -- HGNC:11998 for HGNC symbols; NULL elsewhere
    PRIMARY KEY (ontology, id)
);
-- The term's definition (OBO def:), shown to curators; filled by the next `etlnorm ontology load`.
ALTER TABLE etlnorm.term ADD COLUMN IF NOT EXISTS definition text;
CREATE INDEX IF NOT EXISTS term_accession_idx ON etlnorm.term (ontology, accession) WHERE accession IS NOT NULL;

CREATE TABLE IF NOT EXISTS etlnorm.synonym (
    ontology    text NOT NULL,
    id          text NOT NULL,
    text        text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('EXACT', 'RELATED', 'BROAD', 'NARROW')),
    type        text,                     -- layperson, abbreviation, previous_symbol, ...
    FOREIGN KEY (ontology, id) REFERENCES etlnorm.term (ontology, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS synonym_term_idx ON etlnorm.synonym (ontology, id);

CREATE TABLE IF NOT EXISTS etlnorm.alt_id (
    ontology    text NOT NULL,
    alt_id      text NOT NULL,
    id          text NOT NULL,
    PRIMARY KEY (ontology, alt_id),
    FOREIGN KEY (ontology, id) REFERENCES etlnorm.term (ontology, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS alt_id_term_idx ON etlnorm.alt_id (ontology, id);
