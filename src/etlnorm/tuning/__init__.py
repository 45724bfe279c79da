"""``etlnorm tune``: prepare an ontology within a time budget, then keep the route that measures best.

``measure``: candidate routes scored on a held-out split (and a user's gold file);
``plan``: the budgeted preparation (index, rerank adapter, calibration) and the stored choice.
"""
