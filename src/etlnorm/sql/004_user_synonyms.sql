-- Synonyms a user added (`etlnorm ontology synonyms add`): kept across releases, so no foreign key to
-- etlnorm.term; the ID is stored as given and re-resolved (alt IDs, replacements) whenever it is used.
CREATE TABLE IF NOT EXISTS etlnorm.user_synonym (
    ontology    text NOT NULL,
    text        text NOT NULL,
    id          text NOT NULL,
    scope       text NOT NULL DEFAULT 'EXACT' CHECK (scope IN ('EXACT', 'RELATED', 'BROAD', 'NARROW')),
    source      text,                     -- the file it came from
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ontology, text, id)
);
