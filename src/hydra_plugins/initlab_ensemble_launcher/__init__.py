"""``hydra/launcher=ensemble``: a multirun's compatible jobs trained as one stacked model
(``initlab.ensemble``); see docs/scale-out.md, "The ensemble launcher"."""
