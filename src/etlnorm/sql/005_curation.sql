-- Curation: a person's decisions on a raw term, above any automatic answer, kept across runs and releases.
-- Decisions: 'set-id' (this term is that ID), 'accept' (the current answer is right; its ID is
-- recorded), 'reject' (never write this ID for this term). Plain INSERTs work: an accept or reject
-- without an ID takes the term's cached answer, and each decision drops the term's cached answer so
-- the next run recomputes it under the curation.

-- The current ID an identifier leads to: itself, through an alt ID or an HGNC accession, then
-- replaced_by chains; NULL when unknown or obsolete without replacement.
CREATE OR REPLACE FUNCTION etlnorm.current_id(o text, ident text) RETURNS text
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE start AS (
    SELECT COALESCE(
      (SELECT t.id FROM etlnorm.term t WHERE t.ontology = o AND t.id = ident),
      (SELECT t.id FROM etlnorm.term t WHERE t.ontology = o AND t.accession = ident LIMIT 1),
      (SELECT a.id FROM etlnorm.alt_id a WHERE a.ontology = o AND a.alt_id = ident)) AS id
  ), chain (id, obsolete, replaced_by, depth) AS (
    SELECT t.id, t.obsolete, t.replaced_by, 0 FROM etlnorm.term t JOIN start s ON t.ontology = o AND t.id = s.id
    UNION ALL
    SELECT t.id, t.obsolete, t.replaced_by, c.depth + 1
    FROM chain c JOIN etlnorm.term t ON t.ontology = o AND t.id = c.replaced_by
    WHERE c.obsolete AND c.depth < 50
  )
  SELECT id FROM chain WHERE NOT obsolete ORDER BY depth LIMIT 1
$$;

CREATE TABLE IF NOT EXISTS etlnorm.curation (
    seq         bigserial PRIMARY KEY,
    ontology    text NOT NULL,            -- no foreign key: a reload replaces etlnorm.ontology's row
    term        text NOT NULL CHECK (length(term) BETWEEN 1 AND 1000),
    decision    text NOT NULL CHECK (decision IN ('accept', 'reject', 'set-id')),
    id          text,
    curator     text NOT NULL DEFAULT current_user,
    note        text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS curation_term_idx ON etlnorm.curation (ontology, md5(term));

CREATE OR REPLACE FUNCTION etlnorm.curation_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id IS NULL AND NEW.decision IN ('accept', 'reject') THEN
    SELECT m.id INTO NEW.id FROM etlnorm.mapping m
    WHERE m.ontology = NEW.ontology AND m.term_md5 = md5(NEW.term)::uuid;
    IF NEW.id IS NULL THEN
      RAISE EXCEPTION 'etlnorm: % of %: the term has no cached answer; give the ID', NEW.decision, NEW.term;
    END IF;
  END IF;
  IF NEW.id IS NULL OR etlnorm.current_id(NEW.ontology, NEW.id) IS NULL THEN
    RAISE EXCEPTION 'etlnorm: % is not a current % term', coalesce(NEW.id, 'NULL'), NEW.ontology;
  END IF;
  RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION etlnorm.curation_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM etlnorm.mapping m WHERE m.ontology = NEW.ontology AND m.term_md5 = md5(NEW.term)::uuid;
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS curation_check ON etlnorm.curation;
CREATE TRIGGER curation_check BEFORE INSERT ON etlnorm.curation FOR EACH ROW EXECUTE FUNCTION etlnorm.curation_check();
DROP TRIGGER IF EXISTS curation_forget ON etlnorm.curation;
CREATE TRIGGER curation_forget AFTER INSERT ON etlnorm.curation FOR EACH ROW EXECUTE FUNCTION etlnorm.curation_forget();

-- Each term's standing decision: its latest accept or set-id, resolved to today's ID (NULL: the
-- curated ID became obsolete with no replacement), and every ID rejected for it, resolved too.
CREATE OR REPLACE VIEW etlnorm.curated AS
SELECT DISTINCT ON (c.ontology, c.term)
       c.ontology, c.term, c.id AS curated_id, etlnorm.current_id(c.ontology, c.id) AS id,
       c.decision, c.curator, c.note, c.at
FROM etlnorm.curation c
WHERE c.decision IN ('accept', 'set-id')
ORDER BY c.ontology, c.term, c.seq DESC;

CREATE OR REPLACE VIEW etlnorm.rejected AS
SELECT DISTINCT c.ontology, c.term, coalesce(etlnorm.current_id(c.ontology, c.id), c.id) AS id
FROM etlnorm.curation c
WHERE c.decision = 'reject';

-- The review queue: weak or missing automatic answers, and curated IDs that no longer resolve.
-- What needs a person: abstentions (every answer below min_confidence is written as 'none', with its
-- calibrated confidence and candidates) and curated IDs that became obsolete with no replacement.
DROP VIEW IF EXISTS etlnorm.mapping_review;
CREATE VIEW etlnorm.mapping_review AS
SELECT m.ontology, m.term, m.id, m.label, m.confidence, m.method, m.release, m.created_at, m.candidates
FROM etlnorm.mapping m
WHERE m.method = 'none'
UNION ALL
SELECT k.ontology, k.term, k.curated_id, NULL, 1.0::real, 'curated (obsolete)', o.release, k.at, NULL::jsonb
FROM etlnorm.curated k JOIN etlnorm.ontology o ON o.name = k.ontology
WHERE k.id IS NULL
ORDER BY 5, 2;

-- lookup(): a curated decision first, then the cache.
CREATE OR REPLACE FUNCTION etlnorm.lookup(term text, ontology text)
RETURNS TABLE (id text, label text, confidence real, method text, release text)
LANGUAGE sql STABLE AS $$
  SELECT k.id, t.label, 1.0::real, 'curated', o.release
  FROM etlnorm.curated k JOIN etlnorm.ontology o ON o.name = k.ontology
  LEFT JOIN etlnorm.term t ON t.ontology = k.ontology AND t.id = k.id
  WHERE k.ontology = $2 AND k.term = $1 AND k.id IS NOT NULL
  UNION ALL
  (SELECT m.id, m.label, m.confidence, m.method, m.release
   FROM etlnorm.mapping m
   WHERE m.ontology = $2
     AND (m.term_md5 = md5($1)::uuid OR m.norm_term IN ('sym:' || btrim($1), etlnorm.word_key($1)))
     AND NOT EXISTS (SELECT 1 FROM etlnorm.curated k WHERE k.ontology = $2 AND k.term = $1 AND k.id IS NOT NULL)
     AND NOT EXISTS (SELECT 1 FROM etlnorm.rejected r WHERE r.ontology = $2 AND r.term = $1 AND r.id = m.id)
   ORDER BY m.term_md5 = md5($1)::uuid DESC, m.norm_term LIKE 'sym:%' DESC, m.confidence DESC
   LIMIT 1)
  LIMIT 1
$$;
