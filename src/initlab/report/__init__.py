"""Reading the record back (the compare CLI), one job per module: ``query`` (choose runs, read
their params, curves, records and weights from the store, as data only), ``labels`` (name
them), ``aggregate`` (mean ± 95% CI over seeds), ``rebuild`` (a run's net from the project's
registry and its recorded params), ``curves`` (the loss/accuracy figure), ``figures`` (the
comparison's figures), ``table`` (metrics table and summary) and ``compare`` (the command)."""
