"""Latent values (arXiv 2603.03000): how much value signal a model's representations hold,
which direction a constitution selects, which one generation follows — and a judge that
reads them. `probes` is the maths, `features` reads pairs from a model, `directions` the
constitution and generation directions, `report` puts them together, `judge` labels."""
