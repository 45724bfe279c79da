"""The review page for curators: the queue of weak answers, one-click decisions, coverage at a glance."""
