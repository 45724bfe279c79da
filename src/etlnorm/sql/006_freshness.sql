-- Freshness by content. A release's *label* (data-version, file hash) is for people; machines key
-- what they derive from a release by its content fingerprint: a hash of its terms, synonyms and alt
-- IDs, the same whichever file, download or row order they came from. A cached mapping also records
-- the fingerprint of what produced it (route, models, adapters, thresholds, user synonyms), and is
-- reused only when both match (warehouse/phases.py: refresh_cache, pending_terms).
-- Migration files are append-only: a change to an earlier object goes into a new file.

CREATE OR REPLACE FUNCTION etlnorm.content_fingerprint(o text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT 'sha256:' || left(encode(sha256(convert_to(coalesce(string_agg(line, E'\n' ORDER BY line COLLATE "C"), ''),
                                                    'UTF8')), 'hex'), 32)
  FROM (
    SELECT concat_ws(E'\t', 't', id, coalesce(label, ''), coalesce(namespace, ''), obsolete::text,
                     coalesce(replaced_by, ''), array_to_string(consider, ','), coalesce(accession, '')) AS line
    FROM etlnorm.term WHERE ontology = o
    UNION ALL
    SELECT concat_ws(E'\t', 's', id, text, scope, coalesce(type, '')) FROM etlnorm.synonym WHERE ontology = o
    UNION ALL
    SELECT concat_ws(E'\t', 'a', alt_id, id) FROM etlnorm.alt_id WHERE ontology = o
  ) lines
$$;

ALTER TABLE etlnorm.ontology ADD COLUMN IF NOT EXISTS fingerprint text;
UPDATE etlnorm.ontology SET fingerprint = etlnorm.content_fingerprint(name) WHERE fingerprint IS NULL;

-- fingerprint: the release content the answer was computed against; producer: the configuration
-- that computed it. Rows of an older etlnorm have neither, so they are recomputed once.
ALTER TABLE etlnorm.mapping ADD COLUMN IF NOT EXISTS fingerprint text;
ALTER TABLE etlnorm.mapping ADD COLUMN IF NOT EXISTS producer text;

-- lock_pid: the backend holding the run's advisory lock; every write checks it still does.
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS lock_pid integer;
-- carried_over: cached answers of another release's content kept by the run (the rest were recomputed).
ALTER TABLE etlnorm.run ADD COLUMN IF NOT EXISTS carried_over bigint;
CREATE INDEX IF NOT EXISTS run_live_idx ON etlnorm.run (table_name, column_name, prefix) WHERE status = 'running';

-- Cached answers computed against other content than the release loaded now.
CREATE OR REPLACE VIEW etlnorm.stale_mapping AS
SELECT m.ontology, m.term, m.release AS mapped_release, o.release AS current_release
FROM etlnorm.mapping m JOIN etlnorm.ontology o ON o.name = m.ontology
WHERE m.fingerprint IS DISTINCT FROM o.fingerprint;

-- lookup(): a curated decision first, then the cache, answered in the current release only: a
-- cached ID is followed through alt IDs and replacements to today's ID (with today's label), and an
-- ID that is obsolete with no replacement is not returned. Answers computed on the current content
-- come before older ones.
CREATE OR REPLACE FUNCTION etlnorm.lookup(term text, ontology text)
RETURNS TABLE (id text, label text, confidence real, method text, release text)
LANGUAGE sql STABLE AS $$
  SELECT k.id, t.label, 1.0::real, 'curated', o.release
  FROM etlnorm.curated k JOIN etlnorm.ontology o ON o.name = k.ontology
  LEFT JOIN etlnorm.term t ON t.ontology = k.ontology AND t.id = k.id
  WHERE k.ontology = $2 AND k.term = $1 AND k.id IS NOT NULL
  UNION ALL
  (SELECT c.id, CASE WHEN c.id IS NULL THEN m.label ELSE t.label END, m.confidence, m.method, o.release
   FROM etlnorm.mapping m JOIN etlnorm.ontology o ON o.name = m.ontology
   CROSS JOIN LATERAL (SELECT etlnorm.current_id(m.ontology, m.id) AS id) c
   LEFT JOIN etlnorm.term t ON t.ontology = m.ontology AND t.id = c.id
   WHERE m.ontology = $2
     AND (m.term_md5 = md5($1)::uuid OR m.norm_term IN ('sym:' || btrim($1), etlnorm.word_key($1)))
     AND (m.id IS NULL OR c.id IS NOT NULL)
     AND NOT EXISTS (SELECT 1 FROM etlnorm.curated k WHERE k.ontology = $2 AND k.term = $1 AND k.id IS NOT NULL)
     AND NOT EXISTS (SELECT 1 FROM etlnorm.rejected r WHERE r.ontology = $2 AND r.term = $1 AND r.id = c.id)
   ORDER BY m.fingerprint IS NOT DISTINCT FROM o.fingerprint DESC, m.term_md5 = md5($1)::uuid DESC,
            m.norm_term LIKE 'sym:%' DESC, m.confidence DESC
   LIMIT 1)
  LIMIT 1
$$;

-- word_key() drops invisible format characters first, as etlnorm.textnorm.clean does (soft hyphen,
-- zero-width spaces and joiners, bidi controls, BOM), so "seiz<U+00AD>ure" keys as seizure in both.
CREATE OR REPLACE FUNCTION etlnorm.word_key(term text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(string_agg(etlnorm.singular(w), ' ' ORDER BY n), '')
  FROM regexp_split_to_table(
         btrim(regexp_replace(
           etlnorm.spell_greek(lower(normalize(regexp_replace(regexp_replace(left(term, 2000),
             '[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]', '', 'g'),
             '[\x01-\x1f\x7f]', ' ', 'g'), NFKC))),
           '[^[:alnum:]]+', ' ', 'g')),
         ' ') WITH ORDINALITY AS words(w, n)
  WHERE w <> ''
$$;
