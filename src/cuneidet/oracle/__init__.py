"""Oracle-bone character recognition (JiaGuWen): data, an honest held-out split, the classifier
and the drawing front end's preprocessing. ``cuneidet-train experiment=oracle_bone`` trains it,
``cuneidet-oracle predict image.png`` ranks a drawing's ten most likely characters."""
