"""The gene generator's pairs come from the loaded HGNC release alone: names and symbols -> symbol."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from etlnorm.finetune.data import read_pairs
from etlnorm.finetune.genes import release_gene_pairs


def test_pairs_are_names_alias_and_previous_symbols_of_current_genes(engine, hgnc) -> None:
    pairs = release_gene_pairs(engine)
    by_term = {p.term: p.id for p in pairs}
    assert len(by_term) == len(pairs) > 60_000  # one pair per string
    assert by_term["tumor protein p53"] == "TP53"  # approved name
    with engine.connect() as conn:
        current = set(conn.execute(text("SELECT id FROM etlnorm.term WHERE ontology='hgnc' AND NOT obsolete")).scalars())
        alias, previous = (conn.execute(text(
            "SELECT s.text, s.id FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id) WHERE s.ontology='hgnc' "
            "AND s.type = :k AND NOT t.obsolete AND s.text NOT IN (SELECT text FROM etlnorm.synonym WHERE ontology='hgnc' "
            "AND type IN ('alias_symbol', 'previous_symbol') GROUP BY text HAVING count(DISTINCT id) > 1) LIMIT 1"),
            {"k": k}).one() for k in ("alias_symbol", "previous_symbol"))  # fmt: skip
    assert by_term[alias[0]] == alias[1] and by_term[previous[0]] == previous[1]
    assert {p.id for p in pairs} <= current  # only current symbols are targets
    assert all(p.term != p.id for p in pairs)


def test_ambiguous_strings_and_excluded_terms_are_left_out_and_sampling_is_seeded(engine, hgnc) -> None:
    with engine.connect() as conn:
        shared = conn.execute(text(
            "SELECT s.text FROM etlnorm.synonym s JOIN etlnorm.term t USING (ontology, id) WHERE s.ontology='hgnc'"
            " AND s.type IN ('alias_symbol', 'previous_symbol') AND NOT t.obsolete GROUP BY s.text"
            " HAVING count(DISTINCT s.id) > 1 LIMIT 1")).scalar_one()  # fmt: skip
    withheld = [p.term for p in read_pairs("paper-protein:withheld", "hgnc")]
    pairs = release_gene_pairs(engine, exclude=[*withheld, "TUMOR protein  p53"])
    terms = {p.term for p in pairs}
    assert shared not in terms and "tumor protein p53" not in terms  # excluded case- and space-insensitively
    assert not terms & set(withheld)
    some = release_gene_pairs(engine, limit=50, seed=3)
    assert len(some) == 50 and some == release_gene_pairs(engine, limit=50, seed=3) != release_gene_pairs(engine, limit=50, seed=4)
    names = {p.term for p in release_gene_pairs(engine, kinds=("name",))}
    assert "tumor protein p53" in names and names < {p.term for p in release_gene_pairs(engine)}
    with pytest.raises(ValueError, match="unknown gene string kind"):
        release_gene_pairs(engine, kinds=("nickname",))


def test_the_papers_gene_task_reads_protein_names() -> None:
    train = read_pairs("paper-protein:train", "hgnc")
    names = read_pairs("paper", "hgnc")
    assert len(train) == len(names) == 600 and [p.id for p in train] == [p.id for p in names]
    assert train[0].term == "Prostaglandin G/H synthase 2" and train[0].id == "PTGS2"
    assert train[0].term != names[0].term  # the protein's name, not the gene's
    assert len(read_pairs("paper-protein:withheld", "hgnc")) >= 590


def test_generate_task_trains_on_the_release_and_writes_an_adapter_the_llm_tier_loads(engine, hgnc, tmp_path) -> None:
    from etlnorm.finetune import read_metadata
    from tests.test_cli import etlnorm

    out = tmp_path / "hgnc"
    done = etlnorm("finetune", "--ontology", "hgnc", "--task", "generate", "--sample", "12", "--epochs", "1",
                   "--out", str(out), "--config", str(_tiny_config(tmp_path)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = read_metadata(out)
    assert meta["task"] == "generate" and meta["ontology"] == "hgnc"
    assert meta["data"]["pairs"] == 12 and "approved names, alias and previous symbols" in meta["data"]["source"]
    assert (out / "adapter_config.json").is_file()
    bad = etlnorm("finetune", "--ontology", "hgnc", "--task", "spell")
    assert bad.returncode == 1 and "unknown --task 'spell'" in bad.stderr
    wrong = etlnorm("finetune", "--ontology", "hp", "--with-paper", "--sample", "2", "--withheld", "0", "--out", str(tmp_path / "x"))
    assert wrong.returncode == 1 and "--with-paper adds the paper's protein-name pairs: hgnc only" in wrong.stderr


def _tiny_config(folder):
    path = folder / "tiny.toml"
    path.write_text("[finetune]\nparaphrases = 1\neval_limit = 0\nbatch_size = 32\n")
    return path
