"""Tools over a finished build: statistics (:mod:`.stats`), mask audit (:mod:`.audit`),
drawing (:mod:`.show`, :mod:`.render`), evaluation against ground truth (:mod:`.evaluate`) and
ablations (:mod:`.ablate`)."""
