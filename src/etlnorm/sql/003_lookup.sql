-- etlnorm.word_key(): the normalized key of a term, from inside SQL (lookup() itself: 005_curation.sql).
-- etlnorm.word_key() mirrors etlnorm.textnorm.word_key for the documented subset: NFKC, lower()
-- for casefold(), Greek letters spelled out, every run of non-alphanumerics to one space, the
-- same three plural rules. It agrees with Python on ASCII and Greek input (tested); for other
-- scripts lower() and [[:alnum:]] follow the database's locale.

CREATE OR REPLACE FUNCTION etlnorm.singular(word text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN length(word) <= 3 OR word !~ '^[[:alpha:]]+$' THEN word
    WHEN word ~ 'ies$' AND length(word) > 4 THEN left(word, -3) || 'y'
    WHEN word ~ 'sses$' THEN left(word, -2)
    WHEN word ~ 's$' AND word !~ '(ss|us|is)$' THEN left(word, -1)
    ELSE word
  END
$$;

CREATE OR REPLACE FUNCTION etlnorm.spell_greek(term text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  pairs text[] := ARRAY[
    'α','alpha','β','beta','γ','gamma','δ','delta','ε','epsilon','ζ','zeta','η','eta','θ','theta',
    'ι','iota','κ','kappa','λ','lambda','μ','mu','ν','nu','ξ','xi','ο','omicron','π','pi','ρ','rho',
    'σ','sigma','ς','sigma','τ','tau','υ','upsilon','φ','phi','χ','chi','ψ','psi','ω','omega'];
  i int;
BEGIN
  IF term !~ '[α-ω]' THEN
    RETURN term;
  END IF;
  FOR i IN 1 .. array_length(pairs, 1) BY 2 LOOP
    term := replace(term, pairs[i], ' ' || pairs[i + 1] || ' ');
  END LOOP;
  RETURN term;
END
$$;

CREATE OR REPLACE FUNCTION etlnorm.word_key(term text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(string_agg(etlnorm.singular(w), ' ' ORDER BY n), '')
  FROM regexp_split_to_table(
         btrim(regexp_replace(
           etlnorm.spell_greek(lower(normalize(regexp_replace(left(term, 2000), '[\x01-\x1f\x7f]', ' ', 'g'), NFKC))),
           '[^[:alnum:]]+', ' ', 'g')),
         ' ') WITH ORDINALITY AS words(w, n)
  WHERE w <> ''
$$;

